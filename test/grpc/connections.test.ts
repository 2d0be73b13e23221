// How `http2: true` uses connections to an h2c upstream: calls one after another share one
// HTTP/2 connection; a call made while another is still streaming is never parked behind it
// (undici 7 runs one stream-bodied request at a time per h2 session: upstream/http2.ts); calls
// made at once all reach the upstream at once, none waits for another's answer.
import t, { type Test } from 'tap'
import http2 from 'node:http2'
import { once } from 'node:events'
import type { FastifyServerOptions } from 'fastify'
import { proxyApp, port } from '../helpers/proxy-servers.js'
import { PROMPTLY, within } from '../helpers/bounded.js'

interface CountingUpstream { url: string, sessions: () => number, held: http2.ServerHttp2Stream[], gated: () => number }

/** Calls to /gate the upstream answers only once this many are open at once. */
const GATE = 8

/**
 * An h2c server answering a gRPC-like POST at once (/quick), holding it open (/hold), or answering
 * it only once GATE calls to /gate are open together; counting its sessions.
 */
async function countingUpstream (t: Test): Promise<CountingUpstream> {
  const server = http2.createServer()
  let sessions = 0
  const held: http2.ServerHttp2Stream[] = []
  const gated: http2.ServerHttp2Stream[] = []
  server.on('session', () => { sessions++ })
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {})
    stream.resume()
    if (headers[':path'] === '/gate') {
      gated.push(stream)
      if (gated.length === GATE) for (const s of gated) answer(s, 'end')
      return
    }
    if (headers[':path'] === '/hold') { answer(stream, 'write'); held.push(stream) } else answer(stream, 'end')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { for (const s of [...held, ...gated]) s.destroy(); server.close() })
  return { url: `http://127.0.0.1:${port(server)}`, sessions: () => sessions, held, gated: () => gated.length }
}

/** Answers one empty gRPC message, then (`end`) trailers with status 0, or (`write`) nothing more yet. */
function answer (stream: http2.ServerHttp2Stream, how: 'end' | 'write'): void {
  stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }))
  stream[how](Buffer.from([0, 0, 0, 0, 0]))
}

async function call (session: http2.ClientHttp2Session, path: string): Promise<{ status: string | undefined, stream: http2.ClientHttp2Stream }> {
  const stream = session.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' })
  stream.on('error', () => {})
  stream.end(Buffer.from([0, 0, 0, 0, 0]))
  const [headers] = await within(PROMPTLY, once(stream, 'response'), `the head of ${path}`) as [http2.IncomingHttpHeaders]
  return { status: String(headers[':status']), stream }
}

async function ingressSession (t: Test, upstream: string): Promise<http2.ClientHttp2Session> {
  const { app } = await proxyApp(t, { upstream, http2: true }, { fastify: { http2: true } as FastifyServerOptions })
  const session = http2.connect(`http://127.0.0.1:${port(app.server)}`)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  return session
}

t.test('calls one after another share one HTTP/2 connection to the upstream', async (t) => {
  const up = await countingUpstream(t)
  const session = await ingressSession(t, up.url)
  for (let i = 0; i < 5; i++) {
    const { status, stream } = await call(session, '/quick')
    t.equal(status, '200')
    stream.resume()
    const [trailers] = await within(PROMPTLY, once(stream, 'trailers'), 'the call\'s trailers') as [http2.IncomingHttpHeaders]
    t.equal(trailers['grpc-status'], '0')
    await within(PROMPTLY, once(stream, 'close'), 'the end of the call')
  }
  t.equal(up.sessions(), 1, 'five calls, one upstream connection')
})

t.test('a call made while another streams is answered at once, not parked behind it', async (t) => {
  const up = await countingUpstream(t)
  const session = await ingressSession(t, up.url)
  const long = await call(session, '/hold')
  t.equal(long.status, '200', 'the long call is open')
  const quick = await call(session, '/quick')
  t.equal(quick.status, '200', 'the second call was answered while the first still streams')
  t.equal(up.held.length, 1, 'the first is still open at the upstream')
})

t.test('calls made at once all reach the upstream at once: none waits for another\'s answer', async (t) => {
  const up = await countingUpstream(t)
  const session = await ingressSession(t, up.url)
  // The upstream answers none of them until all GATE are open there: a proxy that sent one only
  // after another's answer would leave them all waiting.
  const calls = Array.from({ length: GATE }, async () => {
    const stream = session.request({ ':method': 'POST', ':path': '/gate', 'content-type': 'application/grpc', te: 'trailers' })
    stream.on('error', () => {})
    stream.resume()
    stream.end(Buffer.from([0, 0, 0, 0, 0]))
    const [[headers], [trailers]] = await Promise.all([once(stream, 'response'), once(stream, 'trailers')]) as [[http2.IncomingHttpHeaders], [http2.IncomingHttpHeaders]]
    return { status: headers[':status'], grpcStatus: trailers['grpc-status'] }
  })
  const answered = await within(PROMPTLY, Promise.all(calls), () => `${GATE} calls open at the upstream at once (it saw ${up.gated()})`)
  t.same(answered, Array(GATE).fill({ status: 200, grpcStatus: '0' }), 'every call answered, with its trailers')
  t.equal(up.gated(), GATE, 'all reached the upstream')
})
