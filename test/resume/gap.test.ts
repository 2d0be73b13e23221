// `sseResume` during the gap between a cut and the resumed stream: the client leaving, the
// deadline's lifetime, attempts running out, a heartbeat, an HTTP/2 client, a pool of two.
import t, { type Test } from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyServerOptions } from 'fastify'
import type { ProxyOptions } from '../../plugins/proxy/index.js'
import type { DeadlineOptions } from '../../plugins/deadline/index.js'
import { proxyApp, port } from '../helpers/proxy-servers.js'
import { PROMPTLY, peerLeft, within } from '../helpers/bounded.js'
import { h2Request, h2ServerOptions, h2Session } from '../helpers/h2.js'
import { chunk, lastEventIds, LAST_CHUNK, SSE_HEAD, sseUpstream, type SseUpstream } from '../helpers/sse-upstream.js'

const E1 = 'id: 1\ndata: one\n\n'
const E2 = 'id: 2\ndata: two\n\n'

async function setup (t: Test, extra: Partial<ProxyOptions> = {}, deadline?: DeadlineOptions): Promise<{ up: SseUpstream, url: string }> {
  const up = await sseUpstream(t)
  const { url } = await proxyApp(t, { upstream: up.url, sseResume: {}, ...extra }, { deadline })
  return { up, url }
}

/** A streaming GET the test can abandon (`req.destroy()`). */
class Client {
  body = ''
  ending: 'end' | 'cut' | null = null
  readonly req: http.ClientRequest
  readonly done: Promise<'end' | 'cut'>
  private readonly progress = new http.Agent()

  constructor (url: string) {
    let settle = (_ending: 'end' | 'cut'): void => {}
    this.done = new Promise(resolve => { settle = resolve })
    this.req = http.get(url, { agent: false }, (res) => {
      res.setEncoding('latin1')
      res.on('data', (data: string) => { this.body += data; this.progress.emit('data') })
      res.on('end', () => { this.ending = 'end' })
      res.on('error', () => {})
      res.on('close', () => { this.ending ??= 'cut'; settle(this.ending) })
    })
    this.req.on('error', () => { this.ending ??= 'cut'; settle(this.ending) })
  }

  async arrives (text: string): Promise<void> {
    const wait = async (): Promise<void> => {
      while (!this.body.includes(text)) {
        if (this.ending !== null) throw new Error(`ended (${this.ending}) before ${JSON.stringify(text)}; it has ${JSON.stringify(this.body)}`)
        await Promise.race([once(this.progress, 'data'), this.done])
      }
    }
    await within(PROMPTLY, wait(), () => `the client received ${JSON.stringify(text)}; it has ${JSON.stringify(this.body)}`)
  }

  async ended (ms = PROMPTLY): Promise<'end' | 'cut'> {
    return await within(ms, this.done, () => `the client's stream ended; it has ${JSON.stringify(this.body)}`)
  }
}

/** The first request answered with E1, then reset: the stream is in its gap once the resume request arrives. */
async function cutAfterFirst (up: SseUpstream, client: Client): Promise<void> {
  const first = await up.next('the first request')
  first.socket.write(SSE_HEAD, 'latin1')
  chunk(first.socket, E1)
  await client.arrives(E1)
  first.socket.resetAndDestroy()
}

t.test('the client leaving during the gap cancels the pending resume request at once', async (t) => {
  const { up, url } = await setup(t)
  const client = new Client(`${url}/feed`)
  await cutAfterFirst(up, client)
  // The resume request is never answered: the gap lasts until the client leaves.
  const second = await up.next('the resume request')
  t.same(lastEventIds(second.head), ['1'])
  client.req.destroy()
  t.ok(['end', 'close'].includes(await peerLeft(second.socket, 'the resume request closed when the client left')))
  // Longer than the wait before a second attempt: none comes.
  await sleep(800)
  t.equal(up.seen.length, 2, 'no further attempt after the client left')
})

t.test('the deadline\'s lifetime ending during the gap: a clean end, the resume request cancelled', async (t) => {
  const { up, url } = await setup(t, {}, { maxStreamDuration: 1000 })
  const client = new Client(`${url}/feed`)
  await cutAfterFirst(up, client)
  const second = await up.next('the resume request')
  t.equal(await client.ended(), 'end', 'a clean end')
  t.equal(client.body, E1)
  t.ok(['end', 'close'].includes(await peerLeft(second.socket, 'the resume request closed at the deadline')))
})

t.test('the deadline\'s idle timer counts the gap as silence: a clean end, the resume request cancelled', async (t) => {
  const { up, url } = await setup(t, { sseHeartbeat: 50 }, { streamIdleTimeout: 600 })
  const client = new Client(`${url}/feed`)
  await cutAfterFirst(up, client)
  const second = await up.next('the resume request')
  const cutAt = Date.now()
  t.equal(await client.ended(), 'end', 'a clean end')
  t.ok(Date.now() - cutAt < 4000, 'at the idle timeout, long before the gap budget (5 s)')
  t.match(client.body, /^id: 1\ndata: one\n\n(:\n\n)*$/, 'the heartbeats did not count as activity')
  t.ok(['end', 'close'].includes(await peerLeft(second.socket, 'the resume request closed at the idle timeout')))
})

t.test('attempts exhausted: a clean end after that many resume requests', async (t) => {
  const { up, url } = await setup(t, { sseResume: { attempts: 2 } })
  const client = new Client(`${url}/feed`)
  await cutAfterFirst(up, client)
  for (let n = 1; n <= 2; n++) {
    const again = await up.next(`resume request ${n}`)
    t.same(lastEventIds(again.head), ['1'], `resume request ${n} asks from id 1`)
    again.socket.resetAndDestroy()
  }
  t.equal(await client.ended(), 'end', 'a clean end')
  t.equal(client.body, E1)
  t.equal(up.seen.length, 3, 'the first request and two resume requests')
})

t.test('the gap budget runs out: a clean end, the pending request cancelled', async (t) => {
  const { up, url } = await setup(t, { sseResume: { gap: 400 } })
  const client = new Client(`${url}/feed`)
  await cutAfterFirst(up, client)
  const second = await up.next('the resume request')
  t.equal(await client.ended(), 'end', 'a clean end')
  t.equal(client.body, E1)
  t.ok(['end', 'close'].includes(await peerLeft(second.socket, 'the resume request closed when the gap ran out')))
})

t.test('a gap longer than the heartbeat period: the client gets a comment line meanwhile', async (t) => {
  const { up, url } = await setup(t, { sseHeartbeat: 100 })
  const client = new Client(`${url}/feed`)
  await cutAfterFirst(up, client)
  const second = await up.next('the resume request')
  await client.arrives(E1 + ':\n\n')
  second.socket.write(SSE_HEAD, 'latin1')
  chunk(second.socket, E2)
  second.socket.end(LAST_CHUNK)
  t.equal(await client.ended(), 'end')
  t.match(client.body, /^id: 1\ndata: one\n\n(:\n\n)+id: 2\ndata: two\n\n$/, 'heartbeats only between the events')
})

t.test('an HTTP/2 client: the resumed events in the same stream', async (t) => {
  const up = await sseUpstream(t)
  const { app } = await proxyApp(t, { upstream: up.url, sseResume: {} }, { fastify: h2ServerOptions(t, 'h2c') as FastifyServerOptions })
  const session = await h2Session(t, 'h2c', port(app.server))
  const { stream, done } = h2Request(session, '/feed')
  let body = ''
  stream.on('data', (data: string) => { body += data })
  const first = await up.next('the first request')
  first.socket.write(SSE_HEAD, 'latin1')
  chunk(first.socket, E1 + 'id: 2\nda')
  await within(PROMPTLY, (async () => { while (!body.includes(E1)) await once(stream, 'data') })(), 'the first event over HTTP/2')
  first.socket.resetAndDestroy()
  const second = await up.next('the resume request')
  t.same(lastEventIds(second.head), ['1'])
  second.socket.write(SSE_HEAD, 'latin1')
  chunk(second.socket, E2)
  second.socket.end(LAST_CHUNK)
  const received = await within(PROMPTLY, done, 'the HTTP/2 stream ended')
  t.equal(received.status, 200)
  t.equal(received.ending, 'end')
  t.equal(received.body, E1 + E2)
})

t.test('with a pool of two, the resume goes to the other replica', async (t) => {
  const a = await sseUpstream(t)
  const b = await sseUpstream(t)
  const { url } = await proxyApp(t, { upstream: [a.url, b.url], sseResume: {}, outlierDetection: false })
  const client = new Client(`${url}/feed`)
  const first = await within(PROMPTLY, Promise.race([a.next('a'), b.next('b')]), 'the first request at either replica')
  const [served, other] = a.seen.length === 1 ? [a, b] : [b, a]
  first.socket.write(SSE_HEAD, 'latin1')
  chunk(first.socket, E1)
  await client.arrives(E1)
  first.socket.resetAndDestroy()
  const second = await other.next('the resume request at the other replica')
  t.same(lastEventIds(second.head), ['1'])
  second.socket.write(SSE_HEAD, 'latin1')
  chunk(second.socket, E2)
  second.socket.end(LAST_CHUNK)
  t.equal(await client.ended(), 'end')
  t.equal(client.body, E1 + E2)
  t.equal(served.seen.length, 1, 'the replica that cut saw one request')
  t.equal(other.seen.length, 1, 'the other replica saw the resume request')
})

t.test('app.close() during the gap: the client\'s stream ends cleanly at once, the resume request cancelled', async (t) => {
  const up = await sseUpstream(t)
  const { app, url } = await proxyApp(t, { upstream: up.url, sseResume: {} })
  const client = new Client(`${url}/feed`)
  await cutAfterFirst(up, client)
  const second = await up.next('the resume request')
  const closing = app.close()
  t.equal(await client.ended(), 'end', 'a clean end')
  t.equal(client.body, E1 + 'retry: 1000\n\n', 'the drain\'s retry field after the last whole event')
  t.ok(['end', 'close'].includes(await peerLeft(second.socket, 'the resume request closed by the drain')))
  await within(PROMPTLY, closing, 'app.close() finished')
})
