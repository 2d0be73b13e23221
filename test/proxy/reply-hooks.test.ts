import t, { type Test } from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { Transform } from 'node:stream'
import type { FastifyReply } from 'fastify'
import { proxyApp, receive, upstream, type Upstream } from '../helpers/proxy-servers.js'
import { PROMPTLY, within } from '../helpers/bounded.js'

// A user's replyOptions.onResponse / onError, a custom `handler` and reply.fromParameters all
// send through the proxy's options: the upstream call keeps its cancellation. These check that
// a client who leaves mid-stream still cuts the upstream, whichever of them sent the request.

/** Streams a first chunk and then nothing; the upstream response is kept to see it cut. */
async function endless (t: Test): Promise<Upstream> {
  return await upstream(t, (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('first chunk\n')
  })
}

/** Opens `url`, waits for the first body bytes, leaves, and resolves once the upstream response is closed unfinished. */
async function leaveMidStream (t: Test, up: Upstream, url: string, label: string): Promise<string> {
  const arrived = once(up.server, 'request') as Promise<[http.IncomingMessage, http.ServerResponse]>
  const client = http.get(url, { agent: false })
  client.on('error', () => {})
  const [response] = await within(PROMPTLY, once(client, 'response'), `${label}: the client got the response head`) as [http.IncomingMessage]
  const [first] = await within(PROMPTLY, once(response, 'data'), `${label}: the client got the first chunk`) as [Buffer]
  const [, upstreamRes] = await within(PROMPTLY, arrived, `${label}: the upstream got the request`)
  client.destroy()
  if (!upstreamRes.closed) await within(PROMPTLY, once(upstreamRes, 'close'), `${label}: the client leaving aborted the upstream request (its response closed)`)
  t.notOk(upstreamRes.writableFinished, `${label}: the upstream response was cut`)
  return first.toString()
}

const upper = (): Transform => new Transform({ transform (chunk: Buffer, _enc, cb) { cb(null, chunk.toString().toUpperCase()) } })

t.test('a user onResponse: the client leaving mid-stream still aborts the upstream', async (t) => {
  const up = await endless(t)
  const { url } = await proxyApp(t, {
    upstream: up.url,
    replyOptions: {
      onResponse (_request, reply, res) {
        reply.send((res as unknown as { stream: NodeJS.ReadableStream }).stream.pipe(upper()))
      }
    }
  })
  t.equal(await leaveMidStream(t, up, `${url}/s`, 'onResponse'), 'FIRST CHUNK\n', 'the hook transformed the body')
  t.equal(up.seen[0].url, '/s')
})

t.test('a custom handler delegating to reply.from(dest, options) keeps cancellation and the upstream it was mapped to', async (t) => {
  const up = await endless(t)
  const dests: string[] = []
  const { url } = await proxyApp(t, {
    upstream: `${up.url}/base`,
    prefix: '/api',
    handler: (_request, reply, dest, options) => { dests.push(dest); return reply.from(dest, options) }
  })
  t.equal(await leaveMidStream(t, up, `${url}/api/s?q=1`, 'handler'), 'first chunk\n')
  t.same(dests, ['/base/s'])
  t.equal(up.seen[0].url, '/base/s?q=1', 'the query travels in the options')
})

t.test('reply.fromParameters in a preHandler, several calls: one call, cancelled with the client', async (t) => {
  const up = await endless(t)
  const { url, app } = await proxyApp(t, {
    upstream: up.url,
    prefix: '/api',
    rewritePrefix: '/v1',
    // As @fastify/http-proxy's README shows it: the hook sends, so it does not call done().
    preHandler (_request, reply: FastifyReply, _done) {
      reply.fromParameters('/api/ignored')
      const { url, options } = reply.fromParameters('/api/other', {}, '/api')
      reply.from(url, options)
    }
  })
  t.equal(await leaveMidStream(t, up, `${url}/api/s`, 'fromParameters'), 'first chunk\n')
  t.same(up.seen.map(r => r.url), ['/v1/other'])
  // The app still serves (the process survived the cut).
  const second = once(up.server, 'request') as Promise<[http.IncomingMessage, http.ServerResponse]>
  const client = http.get(`${url}/api/again`, { agent: false })
  client.on('error', () => {})
  const [, res] = await within(PROMPTLY, second, 'the upstream got the second request')
  client.destroy()
  if (!res.closed) await within(PROMPTLY, once(res, 'close'), 'the second client leaving aborted its upstream request')
  t.notOk(res.writableFinished, 'the second upstream response was cut')
  t.ok(app.server.listening)
})

t.test('a user onError answers upstream failures in place of the proxy\'s 502', async (t) => {
  const down = await upstream(t, (req) => { req.socket.destroy() })
  const errors: string[] = []
  const { url } = await proxyApp(t, {
    upstream: down.url,
    replyOptions: {
      onError (reply, { error }) {
        errors.push((error as Error & { code?: string }).code ?? error.message)
        reply.code(503).send({ custom: true })
      }
    }
  })
  const response = await within(PROMPTLY, receive(`${url}/x`), 'the client got the onError answer')
  t.equal(response.status, 503)
  t.same(JSON.parse(response.body), { custom: true })
  t.equal(errors.length, 1)
  t.equal(down.seen[0].url, '/x')
})
