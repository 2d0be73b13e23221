// WebSockets over HTTP/2 (RFC 8441), the open tunnel: clean and abrupt ends on either side
// (END_STREAM and RST_STREAM(CANCEL) on the client's stream), backpressure through h2 flow
// control, the idle timer, and the drain's 1001 close frames, over TLS and h2c.
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import http2 from 'node:http2'
import type { Socket } from 'node:net'
import type { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import type { WebSocket } from 'ws'
import { H2_MODES } from '../helpers/h2.js'
import { extendedConnect, h2ConnectSession, h2ProxyApp, nextMessage, openH2WebSocket, type ExtendedConnect } from '../helpers/h2-websocket.js'
import { rawUpstream, wsUpstream, type RawUpstream, type WsUpstream } from '../helpers/ws-servers.js'
import { peerLeft, PROMPTLY, until, within } from '../helpers/bounded.js'
import { subscribe } from '../helpers/channels.js'
import { CHANNELS, type TunnelClosedMessage } from '../../lib/diagnostics.js'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'
const { NGHTTP2_CANCEL } = http2.constants

/** The upstream's side of each WebSocket, in the order they opened. */
function upstreamSockets (up: WsUpstream): WebSocket[] {
  const list: WebSocket[] = []
  up.wss.on('connection', ws => list.push(ws))
  return list
}

// The bound for moving what filled the buffers (a few MiB at most) once the reader reads again.
const BULK = 20_000

/** A WebSocket through the proxy over `session`, open; bounded. */
async function openedOn (session: http2.ClientHttp2Session, path: string): ReturnType<typeof openH2WebSocket> {
  return await within(PROMPTLY, openH2WebSocket(session, path), `a WebSocket opened at ${path}`)
}

/** The close code `ws` gets; bounded. */
async function closeCode (ws: WebSocket, what: string): Promise<number> {
  return (await within(PROMPTLY, once(ws, 'close'), what))[0] as number
}

/** How the stream of `request` closed (its RST code, 0 for END_STREAM both ways); bounded. */
async function streamClosed (request: ExtendedConnect, what: string): Promise<number> {
  return await within(PROMPTLY, request.closed, what)
}

/** An extended CONNECT accepted by a raw upstream (a valid 101 for the proxy's key). */
async function rawTunnel (session: http2.ClientHttp2Session, up: RawUpstream, path: string): Promise<{ request: ExtendedConnect, upstream: Socket, upstreamBytes: () => Buffer }> {
  const request = extendedConnect(session, path)
  const conn = await within(PROMPTLY, up.next(), 'the upstream got a connection')
  const head = await within(PROMPTLY, conn.head, 'the upstream got the handshake')
  const key = /sec-websocket-key: (\S+)/i.exec(head)?.[1] ?? ''
  const accept = createHash('sha1').update(key + GUID).digest('base64')
  conn.socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
  await within(PROMPTLY, request.response, 'the client got the 200')
  return { request, upstream: conn.socket, upstreamBytes: () => conn.received().subarray(head.length) }
}

/** Writes 1 MiB chunks until a write has waited 300 ms for 'drain'; returns the bytes taken. */
async function fillUntilStalled (writable: Writable, limit: number): Promise<{ accepted: number, stalled: boolean }> {
  const chunk = Buffer.alloc(1 << 20, 0x61)
  let accepted = 0
  while (accepted < limit) {
    accepted += chunk.length
    if (writable.write(chunk)) continue
    const drained = await Promise.race([
      once(writable, 'drain').then(() => true),
      new Promise<boolean>(resolve => setTimeout(resolve, 300, false))
    ])
    if (!drained) return { accepted, stalled: true }
  }
  return { accepted, stalled: false }
}

async function healthy (t: Test, session: http2.ClientHttp2Session): Promise<void> {
  const stream = session.request({ ':path': '/health' })
  stream.on('error', () => {})
  const [head] = await within(PROMPTLY, once(stream, 'response'), 'an answer to /health') as [http2.IncomingHttpHeaders]
  stream.resume()
  t.equal(head[':status'], 200, 'the process is alive and serving on the same session')
}

for (const mode of H2_MODES) {
  t.test(`${mode}: a close handshake from either side ends the stream cleanly`, async (t) => {
    const up = await wsUpstream(t)
    const sockets = upstreamSockets(up)
    const { port } = await h2ProxyApp(t, mode, { upstream: up.url, before: (app) => { app.get('/health', async () => 'ok') } })
    const session = await h2ConnectSession(t, mode, port)

    const byClient = await openedOn(session, '/ws/a')
    byClient.ws.close(1000, 'bye')
    const upstreamCode = await closeCode(sockets[0], 'the upstream\'s WebSocket closed')
    t.equal(upstreamCode, 1000, 'the upstream got the client\'s close frame')
    t.equal(await streamClosed(byClient.request, 'the client\'s stream closed'), 0, 'the stream ended with END_STREAM both ways, no reset')

    const byUpstream = await openedOn(session, '/ws/b')
    await until(PROMPTLY, () => sockets.length === 2, 'the upstream got the second WebSocket')
    sockets[1].close(4000, 'done')
    const clientCode = await closeCode(byUpstream.ws, 'the client\'s WebSocket closed')
    t.equal(clientCode, 4000, 'the client got the upstream\'s close frame')
    t.equal(await streamClosed(byUpstream.request, 'the client\'s stream closed'), 0)
    await healthy(t, session)
  })

  t.test(`${mode}: an abrupt end on either side takes the other down`, async (t) => {
    const up = await wsUpstream(t)
    const sockets = upstreamSockets(up)
    const { port } = await h2ProxyApp(t, mode, { upstream: up.url, before: (app) => { app.get('/health', async () => 'ok') } })
    const session = await h2ConnectSession(t, mode, port)

    const reset = await openedOn(session, '/ws/reset')
    reset.ws.send('x')
    await within(PROMPTLY, nextMessage(reset.ws), 'the echo')
    reset.request.stream.close(NGHTTP2_CANCEL)
    const code = await closeCode(sockets[0], 'the upstream\'s WebSocket closed after the client\'s RST_STREAM')
    t.equal(code, 1006, 'the client\'s RST_STREAM closed the upstream connection')

    const cut = await openedOn(session, '/ws/cut')
    await until(PROMPTLY, () => sockets.length === 2, 'the upstream got the second WebSocket')
    // A reset, not ws's terminate(), whose FIN is an orderly half-close to pass on.
    ;(sockets[1] as unknown as { _socket: Socket })._socket.resetAndDestroy()
    t.equal(await streamClosed(cut.request, 'the client\'s stream closed after the upstream\'s reset'), NGHTTP2_CANCEL, 'the upstream\'s reset reached the client as RST_STREAM(CANCEL)')
    await healthy(t, session)

    // The whole session goes: every tunnel on it closes upstream.
    const other = await h2ConnectSession(t, mode, port)
    await openedOn(other, '/ws/s1')
    await openedOn(other, '/ws/s2')
    await until(PROMPTLY, () => sockets.length === 4, 'the upstream got both WebSockets of the other session')
    const closes = [sockets[2], sockets[3]].map(async ws => await closeCode(ws, 'the upstream\'s WebSocket closed with the client session'))
    other.destroy()
    t.same(await Promise.all(closes), [1006, 1006], 'destroying the client session closed both upstream connections (no close frame)')
    await until(PROMPTLY, () => up.sockets.size === 0, 'every upstream connection closed')
    t.equal(up.sockets.size, 0, 'no upstream connection left')
    await healthy(t, session)
  })

  t.test(`${mode}: the client resets during the handshake`, async (t) => {
    const raw = await rawUpstream(t)
    const { port } = await h2ProxyApp(t, mode, { upstream: `http://127.0.0.1:${raw.port}`, before: (app) => { app.get('/health', async () => 'ok') } })
    const session = await h2ConnectSession(t, mode, port)
    const request = extendedConnect(session, '/ws/slow')
    const conn = await within(PROMPTLY, raw.next(), 'the upstream got a connection')
    const head = await within(PROMPTLY, conn.head, 'the upstream got the handshake')
    request.stream.close(NGHTTP2_CANCEL)
    t.match(await peerLeft(conn.socket, 'the pending upstream handshake was dropped'), /^(end|close)$/, 'the pending upstream handshake was dropped')
    t.equal(conn.received().toString('latin1'), head, 'the upstream got the handshake and nothing after it')
    // A 101 arriving now finds nobody: nothing may crash.
    conn.socket.on('error', () => {})
    await healthy(t, session)
  })

  t.test(`${mode}: backpressure both ways through h2 flow control`, async (t) => {
    const raw = await rawUpstream(t)
    const { port } = await h2ProxyApp(t, mode, { upstream: `http://127.0.0.1:${raw.port}` })
    const session = await h2ConnectSession(t, mode, port)
    const { request, upstream, upstreamBytes } = await rawTunnel(session, raw, '/ws/bulk')
    const limit = 256 << 20

    request.stream.pause()
    const down = await fillUntilStalled(upstream, limit)
    t.ok(down.stalled, `the upstream stalled after ${down.accepted >> 20} MiB while the client read nothing`)
    let received = 0
    request.stream.on('data', (chunk: Buffer) => { received += chunk.length })
    request.stream.resume()
    await until(BULK, () => received >= down.accepted, `all ${down.accepted} bytes reached the client once it read`)
    t.equal(received, down.accepted, 'every byte reached the client once it read')

    upstream.pause()
    const upward = await fillUntilStalled(request.stream, limit)
    t.ok(upward.stalled, `the client stalled after ${upward.accepted >> 20} MiB while the upstream read nothing`)
    upstream.resume()
    await until(BULK, () => upstreamBytes().length >= upward.accepted, `all ${upward.accepted} bytes reached the upstream once it read`)
    t.equal(upstreamBytes().length, upward.accepted, 'every byte reached the upstream once it read')
  })

  t.test(`${mode}: wsIdleTimeout closes a silent stream with 1001 and closes the upstream`, async (t) => {
    const up = await wsUpstream(t)
    const { port } = await h2ProxyApp(t, mode, { upstream: up.url, wsIdleTimeout: 300 })
    const session = await h2ConnectSession(t, mode, port)
    const { ws, request } = await openedOn(session, '/ws/idle')
    ws.send('once')
    await within(PROMPTLY, nextMessage(ws), 'the echo')
    const quietSince = Date.now()
    const code = closeCode(ws, 'wsIdleTimeout closed the silent tunnel')
    t.equal(await streamClosed(request, 'wsIdleTimeout ended the silent stream'), 0, 'the stream ended cleanly, no reset')
    t.equal(await code, 1001, 'with a 1001 close frame, as on a shutdown')
    const quiet = Date.now() - quietSince
    t.ok(quiet >= 250 && quiet < 5000, `after ${quiet} ms of silence (timeout 300 ms)`)
    await until(PROMPTLY, () => up.sockets.size === 0, 'the upstream connection closed with the stream')
    t.equal(up.sockets.size, 0, 'the upstream connection is gone too')
    t.notOk(session.destroyed, 'only the stream went')
  })

  t.test(`${mode}: app.close() sends 1001 both ways and returns once the close handshakes finish`, async (t) => {
    const up = await wsUpstream(t)
    const sockets = upstreamSockets(up)
    const { app, port } = await h2ProxyApp(t, mode, { upstream: up.url, wsCloseGrace: 5000 })
    const session = await h2ConnectSession(t, mode, port)
    const clients = await Promise.all(['/ws/d1', '/ws/d2'].map(async path => await openedOn(session, path)))
    await until(PROMPTLY, () => sockets.length === 2, 'the upstream got both WebSockets')
    const upstreamCodes = sockets.map(async ws => await closeCode(ws, 'the upstream\'s WebSocket closed on app.close()'))
    const clientCodes = clients.map(async ({ ws }) => await closeCode(ws, 'the client\'s WebSocket closed on app.close()'))
    const started = Date.now()
    await within(PROMPTLY, app.close(), 'app.close() returned')
    const took = Date.now() - started
    t.ok(took < 4000, `close() returned after ${took} ms, before the 5 s grace`)
    t.same(await Promise.all(clientCodes), [1001, 1001], 'each client got 1001 Going Away')
    t.same(await Promise.all(upstreamCodes), [1001, 1001], 'each upstream got 1001 Going Away')
    t.same(await Promise.all(clients.map(async c => await streamClosed(c.request, 'the client\'s stream closed'))), [0, 0], 'the streams ended cleanly')
  })

  t.test(`${mode}: clients closing one WebSocket after another: every tunnel ends`, async (t) => {
    const up = await wsUpstream(t)
    const { port } = await h2ProxyApp(t, mode, { upstream: up.url })
    const ended = subscribe<TunnelClosedMessage>(t, CHANNELS.tunnelClosed)
    const session = await h2ConnectSession(t, mode, port)
    const clients: WebSocket[] = []
    for (let i = 0; i < 20; i++) {
      const { ws } = await openedOn(session, `/ws/many/${i}`)
      ws.send('x')
      await within(PROMPTLY, nextMessage(ws), 'the echo')
      clients.push(ws)
    }
    // Some streams close before the proxy read their end, with bytes still queued for the
    // client: Node never destroys such a stream by itself (it waits for those writes).
    for (const ws of clients) {
      ws.close(1000)
      await closeCode(ws, 'the client\'s WebSocket closed')
    }
    await within(PROMPTLY, ended.waitFor(20), () => `every tunnel ended (${ended.messages.length} of 20 tunnel:closed)`)
    t.ok(ended.messages.every(m => m.closedBy === 'client'), 'each closed by its client')
    await until(PROMPTLY, () => up.sockets.size === 0, 'every upstream connection closed')
  })
}

t.test('wsMaxStreamDuration closes a busy h2 stream with 1001', async (t) => {
  const up = await wsUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: up.url, wsMaxStreamDuration: 400 })
  const session = await h2ConnectSession(t, 'h2c', port)
  const { ws, request } = await openedOn(session, '/ws/lifetime')
  const opened = Date.now()
  const timer = setInterval(() => { if (ws.readyState === ws.OPEN) ws.send('busy') }, 50)
  t.teardown(() => clearInterval(timer))
  const code = closeCode(ws, 'wsMaxStreamDuration closed the busy tunnel')
  t.equal(await streamClosed(request, 'wsMaxStreamDuration ended the busy stream'), 0, 'the stream ended cleanly, no reset')
  t.equal(await code, 1001, 'with a 1001 close frame, as on a shutdown')
  clearInterval(timer)
  const lived = Date.now() - opened
  t.ok(lived >= 350 && lived < 5000, `after ${lived} ms (limit 400 ms)`)
  await until(PROMPTLY, () => up.sockets.size === 0, 'the upstream connection closed with the stream')
  t.equal(up.sockets.size, 0, 'the upstream connection is gone too')
})

t.test('a half-close passes on in both directions over h2 and data still flows the other way', async (t) => {
  const raw = await rawUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: `http://127.0.0.1:${raw.port}` })
  const session = await h2ConnectSession(t, 'h2c', port)
  const { request, upstream, upstreamBytes } = await rawTunnel(session, raw, '/ws/half')
  request.stream.end('last words')
  await within(PROMPTLY, once(upstream, 'end'), 'the client\'s END_STREAM reached the upstream as a FIN')
  t.equal(upstreamBytes().toString(), 'last words', 'the upstream got the bytes, then the FIN (from END_STREAM)')
  upstream.write('reply after your END_STREAM')
  const [chunk] = await within(PROMPTLY, once(request.stream, 'data'), 'the upstream\'s reply reached the half-closed client') as [Buffer]
  t.equal(chunk.toString(), 'reply after your END_STREAM', 'the other direction stays open')
  upstream.end()
  t.equal(await streamClosed(request, 'the upstream\'s FIN ended the stream'), 0, 'the upstream\'s FIN ended the stream: END_STREAM both ways, no reset')
})
