// WebSockets over HTTP/2 (RFC 8441): an extended CONNECT stream through the proxy to an
// HTTP/1.1 WebSocket upstream, over TLS (with allowHTTP1) and h2c.
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import http2 from 'node:http2'
import type { Socket } from 'node:net'
import t, { type Test } from 'tap'
import { WebSocket } from 'ws'
import { H2_MODES } from '../helpers/h2.js'
import deadline from '../../plugins/deadline/index.js'
import { extendedConnect, h2ConnectSession, h2ProxyApp, nextMessage, openH2WebSocket, type ExtendedConnect } from '../helpers/h2-websocket.js'
import { rawUpstream, wsUpstream, type RawUpstream } from '../helpers/ws-servers.js'
import { peerLeft, PROMPTLY, within } from '../helpers/bounded.js'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** A WebSocket through the proxy over `session`, open; bounded. */
async function openedOn (session: http2.ClientHttp2Session, path: string, headers: http2.OutgoingHttpHeaders = {}): ReturnType<typeof openH2WebSocket> {
  return await within(PROMPTLY, openH2WebSocket(session, path, headers), `a WebSocket opened at ${path}`)
}

/** The next message on `ws`; bounded. */
async function echoOf (ws: WebSocket): Promise<string> {
  return await within(PROMPTLY, nextMessage(ws), 'the echo')
}

/** The response head of an extended CONNECT; bounded. */
async function headOf (request: ExtendedConnect): Promise<http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader> {
  return await within(PROMPTLY, request.response, 'the answer to the extended CONNECT')
}

/** The body of an answered extended CONNECT, until its stream closed; bounded. */
async function bodyOf (request: ExtendedConnect): Promise<string> {
  return await within(PROMPTLY, request.body(), 'the answer\'s body and the stream\'s close')
}

/** The next connection to the raw upstream, and the handshake head on it; bounded. */
async function handshakeAt (raw: RawUpstream): Promise<{ conn: Awaited<ReturnType<RawUpstream['next']>>, head: string }> {
  const conn = await within(PROMPTLY, raw.next(), 'the upstream got a connection')
  return { conn, head: await within(PROMPTLY, conn.head, 'the upstream got the handshake') }
}

/** The upstream connection is closed by the proxy, bringing nothing after the handshake. */
async function abandoned (t: Test, conn: { socket: Socket, received: () => Buffer }, head: string, what: string): Promise<void> {
  t.match(await peerLeft(conn.socket, what), /^(end|close)$/, what)
  t.equal(conn.received().toString('latin1'), head, `${what}: the upstream got the handshake and nothing after it`)
}

for (const mode of H2_MODES) {
  t.test(`${mode}: echo, subprotocol, and the upstream sees a valid handshake with the proxy's own key`, async (t) => {
    const up = await wsUpstream(t, { handleProtocols: (protocols) => protocols.has('chat') ? 'chat' : false })
    const { port } = await h2ProxyApp(t, mode, { upstream: up.url })
    const session = await h2ConnectSession(t, mode, port)
    const first = await openedOn(session, '/ws/room?x=1', { 'sec-websocket-protocol': 'superchat, chat', origin: 'https://app.example' })
    t.equal(first.headers['sec-websocket-protocol'], 'chat', 'the upstream\'s subprotocol reaches the client')
    t.equal(first.headers['sec-websocket-accept'], undefined, 'no accept header on an h2 200')
    first.ws.send('hello over h2')
    t.equal(await echoOf(first.ws), 'hello over h2', 'echoed')
    const binary = Buffer.alloc(300_000, 7)
    first.ws.send(binary)
    const [echoed] = await within(PROMPTLY, once(first.ws, 'message'), 'the binary echo') as [Buffer]
    t.ok(binary.equals(echoed), 'a 300 kB binary message comes back intact')
    // A second WebSocket on the same session gets its own upstream handshake and key.
    const second = await openedOn(session, '/ws/other')
    second.ws.send('two')
    t.equal(await echoOf(second.ws), 'two')

    t.equal(up.handshakes.length, 2)
    const [a, b] = up.handshakes
    t.equal(a.url, '/room?x=1', 'the path and query as for an HTTP/1.1 upgrade')
    t.equal(a.method, 'GET')
    t.equal(a.headers.upgrade, 'websocket')
    t.match(a.headers.connection, /upgrade/i)
    t.equal(a.headers['sec-websocket-version'], '13')
    t.equal(a.headers['sec-websocket-protocol'], 'superchat, chat')
    t.equal(a.headers.origin, 'https://app.example')
    t.equal(a.headers.host, `127.0.0.1:${up.port}`)
    t.equal(a.headers['x-forwarded-proto'], mode === 'tls' ? 'https' : 'http')
    t.equal(Buffer.from(String(a.headers['sec-websocket-key']), 'base64').length, 16, 'a 16-byte random key')
    t.not(a.headers['sec-websocket-key'], b.headers['sec-websocket-key'], 'a fresh key per handshake')
    t.notOk(Object.keys(a.headers).some(name => name.startsWith(':')), 'no pseudo-header upstream')
    first.ws.close(1000)
    await within(PROMPTLY, once(first.ws, 'close'), 'the close handshake')
    second.ws.terminate()
    t.notOk(session.destroyed, 'the session outlives its WebSockets')
  })

  t.test(`${mode}: an auth hook refuses with its own answer before the upstream is contacted`, async (t) => {
    const up = await wsUpstream(t)
    let connections = 0
    up.server.on('connection', () => { connections++ })
    const { port } = await h2ProxyApp(t, mode, {
      upstream: up.url,
      before: (app) => {
        app.addHook('onRequest', async (request, reply) => {
          if (request.headers.authorization !== 'Bearer ok') await reply.code(401).send({ error: 'who are you', method: request.method })
        })
      }
    })
    const session = await h2ConnectSession(t, mode, port)
    const refused = extendedConnect(session, '/ws/secret')
    const head = await headOf(refused)
    t.equal(head[':status'], 401)
    t.same(JSON.parse(await bodyOf(refused)), { error: 'who are you', method: 'CONNECT' }, 'the hook saw a CONNECT')
    const allowed = await openedOn(session, '/ws/secret', { authorization: 'Bearer ok' })
    allowed.ws.send('in')
    t.equal(await echoOf(allowed.ws), 'in')
    t.equal(connections, 1, 'only the allowed WebSocket reached the upstream')
    t.equal(up.handshakes[0].headers.authorization, 'Bearer ok', 'credentials pass on like over HTTP/1.1')
    allowed.ws.terminate()
  })

  t.test(`${mode}: refusals and failures are answered on the stream`, async (t) => {
    const raw = await rawUpstream(t)
    const { port } = await h2ProxyApp(t, mode, {
      upstream: `http://127.0.0.1:${raw.port}`,
      before: (app) => { app.get('/health', async () => ({ ok: true })) }
    })
    const session = await h2ConnectSession(t, mode, port)

    // The upstream refuses (403 with a body larger than h2's initial window): relayed whole.
    const refused = extendedConnect(session, '/ws/denied')
    const { conn, head } = await handshakeAt(raw)
    t.match(head, /^GET \/denied HTTP\/1\.1\r\n/)
    const page = 'no way '.repeat(50_000)
    conn.socket.end(`HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: ${page.length}\r\nConnection: close\r\n\r\n${page}`)
    const refusal = await headOf(refused)
    t.equal(refusal[':status'], 403)
    t.equal(refusal['content-type'], 'text/plain')
    t.ok(await bodyOf(refused) === page, 'the whole 350 kB body')
    t.equal(await within(PROMPTLY, refused.closed, 'the stream closed'), 0, 'then the stream closed without an error')

    // A 101 whose Sec-WebSocket-Accept is not for the proxy's key.
    const forged = extendedConnect(session, '/ws/forged')
    const { conn: conn2, head: head2 } = await handshakeAt(raw)
    conn2.socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n')
    t.equal((await headOf(forged))[':status'], 502)
    t.equal(JSON.parse(await bodyOf(forged)).code, 'FST_STREAMLINE_UPSTREAM_BAD_RESPONSE')
    await abandoned(t, conn2, head2, 'the upstream connection with the bad 101 is closed')

    // No proxy route for the path, and an app route that is not a proxy.
    for (const path of ['/nope', '/health']) {
      const missing = extendedConnect(session, path)
      t.equal((await headOf(missing))[':status'], 404, `${path}: 404`)
      t.equal(JSON.parse(await bodyOf(missing)).statusCode, 404)
    }
    // A plain CONNECT (a tunnel request) and an extended CONNECT for another protocol.
    const tunnel = session.request({ ':method': 'CONNECT', ':authority': 'example.com:443' })
    tunnel.on('error', () => {})
    const [tunnelHead] = await within(PROMPTLY, once(tunnel, 'response'), 'the answer to a plain CONNECT') as [http2.IncomingHttpHeaders]
    t.equal(tunnelHead[':status'], 405, 'a plain CONNECT is refused')
    const other = extendedConnect(session, '/ws/x', { ':protocol': 'connect-udp' })
    t.equal((await headOf(other))[':status'], 405)
    t.equal(JSON.parse(await bodyOf(other)).code, 'FST_STREAMLINE_PROXY_CONNECT_NOT_ALLOWED')
    t.equal(raw.connections.length, 2, 'none of those reached the upstream')
    t.notOk(session.destroyed, 'the session survived them all')
  })
}

t.test('an unreachable upstream is a 502 with its code', async (t) => {
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: 'http://127.0.0.1:9' })
  const session = await h2ConnectSession(t, 'h2c', port)
  const req = extendedConnect(session, '/ws/x')
  t.equal((await headOf(req))[':status'], 502)
  t.equal(JSON.parse(await bodyOf(req)).code, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE')
})

t.test('a proxy registration without websocket on the same server refuses the extended CONNECT with its 404', async (t) => {
  const up = await wsUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', {
    upstream: up.url,
    before: async (app) => { await app.register((await import('../../plugins/proxy/index.js')).default, { upstream: up.url, prefix: '/plain' }) }
  })
  const session = await h2ConnectSession(t, 'h2c', port)
  const req = extendedConnect(session, '/plain/x')
  t.equal((await headOf(req))[':status'], 404)
  t.equal(JSON.parse(await bodyOf(req)).code, 'FST_STREAMLINE_PROXY_NOT_FOUND')
  t.equal(up.handshakes.length, 0)
})

t.test('the upstream\'s accept is checked against the key the proxy sent', async (t) => {
  const raw = await rawUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: `http://127.0.0.1:${raw.port}` })
  const session = await h2ConnectSession(t, 'h2c', port)
  const req = extendedConnect(session, '/ws/ok')
  const { conn, head } = await handshakeAt(raw)
  const key = /sec-websocket-key: (\S+)/i.exec(head)?.[1] ?? ''
  const accept = createHash('sha1').update(key + GUID).digest('base64')
  conn.socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Extensions: x-test\r\n\r\n`)
  const response = await headOf(req)
  t.equal(response[':status'], 200)
  t.equal(response['sec-websocket-extensions'], 'x-test', 'the upstream\'s extensions reach the client')
  // Raw bytes pass both ways untouched.
  conn.socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69]))
  const [chunk] = await within(PROMPTLY, once(req.stream, 'data'), 'the upstream\'s bytes reached the client') as [Buffer]
  t.same([...chunk], [0x81, 0x02, 0x68, 0x69])
  req.stream.close(http2.constants.NGHTTP2_CANCEL)
  await abandoned(t, conn, head, 'the client\'s RST closed the upstream connection')
})

t.test('an HTTP/1.1 WebSocket still works on the same TLS port', async (t) => {
  const up = await wsUpstream(t)
  const { port } = await h2ProxyApp(t, 'tls', { upstream: up.url })
  const ws = new WebSocket(`wss://127.0.0.1:${port}/ws/h1`, { rejectUnauthorized: false })
  await within(PROMPTLY, once(ws, 'open'), 'the HTTP/1.1 WebSocket opened')
  ws.send('h1')
  t.equal(await echoOf(ws), 'h1')
  ws.terminate()
})

t.test('the deadline covers the h2 handshake (504 on the stream), then the tunnel is free of it', async (t) => {
  const raw = await rawUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', {
    upstream: `http://127.0.0.1:${raw.port}`,
    before: async (app) => { await app.register(deadline, { timeout: 300 }) }
  })
  const session = await h2ConnectSession(t, 'h2c', port)
  const started = Date.now()
  const slow = extendedConnect(session, '/ws/slow')
  const { conn, head: handshake } = await handshakeAt(raw)
  const head = await headOf(slow)
  const elapsed = Date.now() - started
  t.equal(head[':status'], 504)
  t.equal(JSON.parse(await bodyOf(slow)).code, 'FST_STREAMLINE_DEADLINE_EXCEEDED')
  t.equal(head.connection, undefined, 'no Connection header on h2')
  t.ok(elapsed >= 280 && elapsed < 2000, `504 after ${elapsed} ms (deadline 300 ms)`)
  await abandoned(t, conn, handshake, 'the upstream handshake was abandoned')

  const up = await wsUpstream(t)
  const second = await h2ProxyApp(t, 'h2c', { upstream: up.url, before: async (app) => { await app.register(deadline, { timeout: 300 }) } })
  const session2 = await h2ConnectSession(t, 'h2c', second.port)
  const { ws } = await openedOn(session2, '/ws/long')
  // Outlive the 300 ms deadline by a wide margin: a tunnel still bound to it would be cut.
  await new Promise(resolve => setTimeout(resolve, 700))
  ws.send('still here')
  t.equal(await echoOf(ws), 'still here')
  ws.terminate()
})

t.test('without a deadline, wsHandshakeTimeout bounds the h2 handshake', async (t) => {
  const raw = await rawUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: `http://127.0.0.1:${raw.port}`, wsHandshakeTimeout: 300 })
  const session = await h2ConnectSession(t, 'h2c', port)
  const slow = extendedConnect(session, '/ws/slow')
  const { conn, head } = await handshakeAt(raw)
  t.equal((await headOf(slow))[':status'], 504)
  t.equal(JSON.parse(await bodyOf(slow)).code, 'FST_STREAMLINE_UPSTREAM_TIMEOUT')
  await abandoned(t, conn, head, 'the upstream handshake was abandoned')
  t.equal(await within(PROMPTLY, slow.closed, 'the stream closed'), 0, 'the stream ended after the answer')
})

t.test('app.close() during an h2 handshake answers 503 on the stream', async (t) => {
  const raw = await rawUpstream(t)
  const { app, port } = await h2ProxyApp(t, 'h2c', { upstream: `http://127.0.0.1:${raw.port}`, wsCloseGrace: 2000 })
  const session = await h2ConnectSession(t, 'h2c', port)
  const pending = extendedConnect(session, '/ws/pending')
  const { conn, head } = await handshakeAt(raw)
  const closing = app.close()
  t.equal((await headOf(pending))[':status'], 503)
  t.equal(JSON.parse(await bodyOf(pending)).code, 'FST_STREAMLINE_PROXY_SHUTTING_DOWN')
  await abandoned(t, conn, head, 'the pending upstream handshake was abandoned')
  await within(PROMPTLY, closing, 'app.close() returned')
  t.notOk(app.server.listening, 'close() returned: the server no longer listens')
})

t.test('a refusal whose body the upstream cuts short is reset with INTERNAL_ERROR, never ended as complete', async (t) => {
  const raw = await rawUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: `http://127.0.0.1:${raw.port}` })
  const session = await h2ConnectSession(t, 'h2c', port)
  const refused = extendedConnect(session, '/ws/denied')
  const { conn } = await handshakeAt(raw)
  conn.socket.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 1000\r\n\r\npartial')
  t.equal((await headOf(refused))[':status'], 403)
  let ended = false
  refused.stream.on('end', () => { ended = true })
  const body = refused.body()
  await within(PROMPTLY, once(refused.stream, 'data'), 'the start of the refusal\'s body')
  conn.socket.resetAndDestroy()
  t.equal(await within(PROMPTLY, body, 'the refusal\'s body, until the stream closed'), 'partial')
  t.equal(await within(PROMPTLY, refused.closed, 'the stream closed'), http2.constants.NGHTTP2_INTERNAL_ERROR)
  t.notOk(ended, 'no END_STREAM')
})
