// The drain over TLS and HTTP/2, where Node's own idle-connection sweep would cut a response
// that has ended but is still in flight, and where Node 20's HTTP/2 server cannot close its
// sessions: event streams still end cleanly, downloads are cut at drainTimeout, and close()
// resolves within drainTimeout + 1 s, for HTTP/1.1 over TLS and for HTTP/2 (h2 and HTTP/1.1 clients).
import Fastify, { type FastifyInstance } from 'fastify'
import { once } from 'node:events'
import http2 from 'node:http2'
import https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { test, type Test } from 'tap'
import proxy from '../../plugins/proxy/index.js'
import { childUpstream, type ChildUpstream } from '../helpers/child-upstream.js'
import { Stream } from '../helpers/stream-client.js'
import { selfSignedCertificate } from '../helpers/tls.js'
import { within } from '../helpers/bounded.js'

const DRAIN = 1500

async function tlsIngress (t: Test, upstream: ChildUpstream, http2: boolean): Promise<{ app: FastifyInstance, url: string, cert: Buffer }> {
  const { key, cert } = selfSignedCertificate(t)
  // One type for both: the test only registers, listens and closes.
  const app = (http2
    ? Fastify({ http2: true, https: { key, cert, allowHTTP1: true } })
    : Fastify({ https: { key, cert } })) as unknown as FastifyInstance
  await app.register(proxy, { upstream: upstream.url, prefix: '/up', drainTimeout: DRAIN })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, url: `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`, cert }
}

/** An HTTP/2 GET on `session`: its body and whether it ended cleanly ('end') or not ('cut'). */
function h2Get (session: http2.ClientHttp2Session, path: string): { body: () => string, done: Promise<'end' | 'cut'>, endedAt: () => number, started: Promise<void> } {
  const stream = session.request({ ':path': path })
  let body = ''
  let ended = false
  let endedAt = 0
  stream.setEncoding('latin1')
  const started = new Promise<void>(resolve => stream.once('data', (data: string) => { body += data; resolve() }))
  stream.on('data', (data: string) => { if (body.length > 0) body += data })
  stream.on('end', () => { ended = true })
  stream.on('error', () => {})
  const done = once(stream, 'close').then(() => { endedAt = Date.now(); return ended && stream.rstCode === http2.constants.NGHTTP2_NO_ERROR ? 'end' as const : 'cut' as const })
  return { body: () => body, done, endedAt: () => endedAt, started }
}

/** The paths of the upstream's first `count` streams it saw closed (not finished), sorted; rejects after 10 s. */
async function closedPaths (upstream: ChildUpstream, count: number): Promise<string[]> {
  const lines = await upstream.lines.waitForCount(/^closed \/(sse|download) /, count)
  return lines.map(line => line.split(' ')[1]).sort()
}

async function assertClosed (t: Test, closing: Promise<unknown>, started: number): Promise<void> {
  await within(DRAIN + 5000, closing, 'close() resolving')
  const elapsed = Date.now() - started
  t.ok(elapsed >= DRAIN - 50 && elapsed < DRAIN + 1000, `close() resolved ${elapsed} ms after it was called (drainTimeout ${DRAIN} ms)`)
}

test('HTTPS (HTTP/1.1): the event stream ends cleanly, the download is cut, an idle keep-alive connection is closed', async (t) => {
  const upstream = await childUpstream(t)
  const { app, url, cert } = await tlsIngress(t, upstream, false)
  const sse = new Stream(`${url}/up/sse`, { ca: cert })
  const download = new Stream(`${url}/up/download`, { ca: cert })
  const agent = new https.Agent({ keepAlive: true, ca: cert })
  t.teardown(() => agent.destroy())
  const idle = await within(10_000, new Promise<Socket>((resolve, reject) => {
    const req = https.get(`${url}/up/slow?ms=0`, { agent }, (res) => { res.resume(); res.on('end', () => resolve(req.socket as Socket)) })
    req.on('error', reject)
  }), 'the answer to a request on the keep-alive connection')
  const idleClosed = once(idle, 'close')
  await within(10_000, Promise.all([sse.until(body => body.includes('\n\n')), download.until(body => body.length > 0)]),
    'an event of /sse and the first bytes of /download')

  const started = Date.now()
  const closing = app.close()
  t.equal(await within(5000, sse.done, 'the end of the event stream'), 'end', 'the event stream got its last chunk: a clean end, not cut by the server')
  t.match(sse.body, /\n\nretry: 1000\n\n$/, 'at an event boundary, then the retry field')
  const [idleHadError] = await within(DRAIN, idleClosed, 'the close of the idle keep-alive connection before drainTimeout') as [boolean]
  t.equal(idleHadError, false, 'the idle keep-alive connection was closed, without an error')
  t.equal(await within(DRAIN + 5000, download.done, 'the end of the download'), 'cut', 'the download was cut')
  await assertClosed(t, closing, started)
  t.same(await closedPaths(upstream, 2), ['/download', '/sse'], 'the upstream saw both of its streams closed')
})

test('HTTP/2 with allowHTTP1: h2 and HTTP/1.1 event streams end cleanly, the h2 download is cut, the session closed', async (t) => {
  const upstream = await childUpstream(t)
  const { app, url, cert } = await tlsIngress(t, upstream, true)
  const session = http2.connect(url, { ca: cert })
  session.on('error', () => {})
  t.teardown(() => session.destroy())
  const goaway = once(session, 'goaway')
  const h2sse = h2Get(session, '/up/sse')
  const h2download = h2Get(session, '/up/download')
  const h1sse = new Stream(`${url}/up/sse`, { ca: cert })
  await within(10_000, Promise.all([h2sse.started, h2download.started, h1sse.until(body => body.includes('\n\n'))]),
    'the first bytes of the h2 /sse and /download and an event of the HTTP/1.1 /sse')

  const started = Date.now()
  const closing = app.close()
  const [goawayCode] = await within(DRAIN, goaway, 'a GOAWAY before drainTimeout') as [number]
  t.equal(goawayCode, http2.constants.NGHTTP2_NO_ERROR, 'the h2 session got a GOAWAY (NO_ERROR) at once: no new streams on it')
  t.equal(await within(5000, h2sse.done, 'the end of the h2 event stream'), 'end', 'the h2 event stream ended cleanly')
  t.match(h2sse.body(), /\n\nretry: 1000\n\n$/, '  at an event boundary, then the retry field')
  t.ok(h2sse.endedAt() - started < DRAIN, '  without waiting for drainTimeout')
  t.equal(await within(5000, h1sse.done, 'the end of the HTTP/1.1 event stream'), 'end', 'the HTTP/1.1 event stream on the same server ended cleanly')
  t.match(h1sse.body, /\n\nretry: 1000\n\n$/)
  t.equal(await within(DRAIN + 5000, h2download.done, 'the end of the h2 download'), 'cut', 'the h2 download was cut, not ended')
  t.ok(h2download.endedAt() - started >= DRAIN - 50, `  at drainTimeout (${h2download.endedAt() - started} ms)`)
  await assertClosed(t, closing, started)
  t.same(await closedPaths(upstream, 3), ['/download', '/sse', '/sse'], 'the upstream saw its three streams closed')
})
