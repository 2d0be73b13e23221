// `sseResume` refused at registration with a message that says how to fix it; `config.sseResume` wins.
import Fastify from 'fastify'
import t from 'tap'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'
import { proxyApp } from '../helpers/proxy-servers.js'
import { Stream } from '../helpers/stream-client.js'
import { PROMPTLY, within } from '../helpers/bounded.js'
import { chunk, SSE_HEAD, sseUpstream } from '../helpers/sse-upstream.js'

async function registrationError (options: Record<string, unknown>): Promise<Error & { code?: string }> {
  const app = Fastify()
  app.register(proxy, options as unknown as ProxyOptions)
  const err = await app.ready().then(() => null, (e: Error & { code?: string }) => e)
  await app.close()
  if (err === null) throw new Error(`accepted: ${JSON.stringify(options)}`)
  return err
}

t.test('sseResume options: each wrong one named', async (t) => {
  const upstream = 'http://127.0.0.1:1'
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ upstream, sseResume: 3 }, 'sseResume: expected an object ({ attempts, gap, resumeOn }), true or false'],
    [{ upstream, sseResume: { attempts: 0 } }, 'sseResume.attempts: expected an integer >= 1, got 0'],
    [{ upstream, sseResume: { gap: 1.5 } }, 'sseResume.gap: expected an integer >= 1, got 1.5'],
    [{ upstream, sseResume: { resumeOn: 'always' } }, "sseResume.resumeOn: expected 'error' or 'any-end'"],
    [{ upstream, sseResume: { attempt: 2 } }, 'sseResume.attempt: unknown option (did you mean attempts?)'],
    [{ upstream, config: { sseResume: { gap: -1 } } }, 'config.sseResume.gap: expected an integer >= 1, got -1'],
    [{ upstream, resumeDownloads: 'yes' }, 'resumeDownloads: expected an object ({ attempts, gap }), true or false'],
    [{ upstream, resumeDownloads: { resumeOn: 'any-end' } }, 'resumeDownloads.resumeOn: unknown option']
  ]
  for (const [options, message] of cases) {
    const err = await registrationError(options)
    t.same({ code: err.code, message: err.message }, { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION', message: `Invalid proxy option ${message}` })
  }
})

t.test('config.sseResume: false turns off the registration\'s sseResume', async (t) => {
  const up = await sseUpstream(t)
  const { url } = await proxyApp(t, { upstream: up.url, sseResume: true, config: { sseResume: false } })
  const client = new Stream(`${url}/feed`)
  const first = await up.next('the first request')
  first.socket.write(SSE_HEAD, 'latin1')
  chunk(first.socket, 'id: 1\ndata: one\n\nid: 2\ndata: ha')
  await within(PROMPTLY, client.until(body => body.includes('ha')), 'the partial event, relayed as it comes without resume')
  first.socket.resetAndDestroy()
  t.equal(await within(PROMPTLY, client.done, 'the client\'s stream ended'), 'cut')
  t.equal(up.seen.length, 1, 'no resume request')
})
