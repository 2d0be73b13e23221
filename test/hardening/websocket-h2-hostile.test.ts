// Hostile and odd HTTP/2 CONNECT streams against a proxy with WebSockets over HTTP/2 on:
// hand-made frames (no :path, :protocol on a GET), :protocol without the setting, END_STREAM
// on the request, early data, bad paths, and HTTP/1.1 CONNECT on the allowHTTP1 port. Nothing
// may crash; each case ends with a request served on the same server.
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import http2 from 'node:http2'
import tls from 'node:tls'
import t, { type Test } from 'tap'
import { extendedConnect, h2ConnectSession, h2ProxyApp } from '../helpers/h2-websocket.js'
import { gone, rawUpstream, wsUpstream } from '../helpers/ws-servers.js'
import { within } from '../helpers/bounded.js'
import { frame, GOAWAY, HEADERS, literal, rawH2, RST_STREAM } from '../helpers/h2-frames.js'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

async function healthy (t: Test, mode: 'tls' | 'h2c', port: number): Promise<void> {
  const session = await h2ConnectSession(t, mode, port)
  const stream = session.request({ ':path': '/health' })
  stream.on('error', () => {})
  const [head] = await within(10_000, once(stream, 'response'), 'the answer to /health') as [http2.IncomingHttpHeaders]
  stream.resume()
  t.equal(head[':status'], 200, 'the process is alive and serving')
  session.close()
}

const withHealth = { before: (app: import('fastify').FastifyInstance) => { app.get('/health', async () => 'ok') } }

t.test('hand-made CONNECT frames nghttp2 refuses: no :path, :protocol on a GET', async (t) => {
  const up = await wsUpstream(t)
  let connections = 0
  up.server.on('connection', () => { connections++ })
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: up.url, ...withHealth })
  const cases: Array<[string, Buffer[]]> = [
    ['extended CONNECT without :path', [literal(':method', 'CONNECT'), literal(':protocol', 'websocket'), literal(':scheme', 'http'), literal(':authority', '127.0.0.1')]],
    [':protocol on a GET', [literal(':method', 'GET'), literal(':protocol', 'websocket'), literal(':scheme', 'http'), literal(':authority', '127.0.0.1'), literal(':path', '/ws/x')]],
    ['extended CONNECT without :scheme', [literal(':method', 'CONNECT'), literal(':protocol', 'websocket'), literal(':authority', '127.0.0.1'), literal(':path', '/ws/x')]]
  ]
  for (const [name, fields] of cases) {
    const conn = await rawH2(t, port)
    // END_HEADERS (0x4), the stream left open as a WebSocket client leaves it.
    conn.socket.write(frame(HEADERS, 0x4, 1, Buffer.concat(fields)))
    const answer = await conn.until(f => (f.type === RST_STREAM && f.streamId === 1) || f.type === GOAWAY || (f.type === HEADERS && f.streamId === 1))
    t.not(answer.type, HEADERS, `${name}: refused by the protocol layer (frame type ${answer.type})`)
  }
  t.equal(connections, 0, 'nothing reached the upstream')
  await healthy(t, 'h2c', port)
})

t.test(':protocol sent to a server that did not enable it is refused before the proxy', async (t) => {
  const up = await wsUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: up.url, enableConnectProtocol: false, ...withHealth })
  const session = await h2ConnectSession(t, 'h2c', port)
  t.equal(session.remoteSettings.enableConnectProtocol, false)
  const request = extendedConnect(session, '/ws/x')
  const code = await within(10_000, request.closed, 'the close of the refused stream')
  t.not(code, 0, `the stream was reset (code ${code})`)
  t.equal(up.handshakes.length, 0)
  await healthy(t, 'h2c', port)
})

t.test('a request that ends its stream with its headers, and a bad path', async (t) => {
  const raw = await rawUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: `http://127.0.0.1:${raw.port}`, ...withHealth })
  const session = await h2ConnectSession(t, 'h2c', port)
  const ended = session.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/ws/ended', 'sec-websocket-version': '13' }, { endStream: true })
  ended.on('error', () => {})
  let status: unknown
  ended.on('response', (head: http2.IncomingHttpHeaders) => { status = head[':status'] })
  ended.resume()
  await within(10_000, once(ended, 'close'), 'the close of the stream that ended with its headers')
  t.equal(status, undefined, 'the stream that ended with its headers got no answer')
  t.equal(ended.rstCode, http2.constants.NGHTTP2_CANCEL, 'it was reset with CANCEL')
  // Its upstream handshake, if it was sent before the END_STREAM was seen, was dropped.
  await within(10_000, Promise.all(raw.connections.map(async conn => await gone(conn.socket))), 'the end of the upstream connections')
  const bad = extendedConnect(session, '/ws/%2e%2e/%2e%2e/etc/passwd')
  t.equal((await within(10_000, bad.response, 'the answer to a bad path'))[':status'], 400)
  t.equal(JSON.parse(await within(10_000, bad.body(), 'the body of the answer to a bad path')).code, 'FST_STREAMLINE_PROXY_BAD_PATH')
  await healthy(t, 'h2c', port)
})

t.test('bytes sent before the 200 wait for the upstream\'s 101 and then reach it', async (t) => {
  const raw = await rawUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: `http://127.0.0.1:${raw.port}` })
  const session = await h2ConnectSession(t, 'h2c', port)
  const request = extendedConnect(session, '/ws/early')
  const early = Buffer.from([0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e])
  request.stream.write(early)
  const conn = await within(10_000, raw.next(), 'a connection to the upstream')
  const head = await within(10_000, conn.head, 'the handshake at the upstream')
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(conn.received().length, head.length, 'the upstream got nothing before it accepted')
  const key = /sec-websocket-key: (\S+)/i.exec(head)?.[1] ?? ''
  conn.socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${createHash('sha1').update(key + GUID).digest('base64')}\r\n\r\n`)
  t.equal((await within(10_000, request.response, 'the 200 to the client'))[':status'], 200)
  while (conn.received().length < head.length + early.length) await within(10_000, once(conn.socket, 'data'), 'the early frame at the upstream')
  t.ok(conn.received().subarray(head.length).equals(early), 'then the early frame, intact')
  request.stream.close(http2.constants.NGHTTP2_CANCEL)
  await within(10_000, gone(conn.socket), 'the end of the upstream connection after the client\'s CANCEL')
  t.equal(conn.received().length, head.length + early.length, 'nothing more reached the upstream')
})

t.test('HTTP/1.1 CONNECT on the allowHTTP1 port: the socket is closed as Node does without a listener', async (t) => {
  const up = await wsUpstream(t)
  const { port } = await h2ProxyApp(t, 'tls', { upstream: up.url, ...withHealth })
  const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
  socket.on('error', () => {})
  await within(10_000, once(socket, 'secureConnect'), 'the TLS handshake')
  t.equal(socket.alpnProtocol, 'http/1.1')
  let received = 0
  socket.on('data', (chunk: Buffer) => { received += chunk.length })
  socket.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')
  await within(10_000, once(socket, 'close'), 'the close of the CONNECT connection')
  t.equal(received, 0, 'closed without an answer')
  t.equal(up.handshakes.length, 0)
  await healthy(t, 'tls', port)
})

t.test('an app\'s own connect listener keeps every CONNECT that is not an HTTP/2 WebSocket, and the WebSockets it answers', async (t) => {
  const up = await wsUpstream(t)
  const seen: string[] = []
  const { app, port } = await h2ProxyApp(t, 'tls', { upstream: up.url })
  app.server.on('connect', (req: import('node:http').IncomingMessage, second: import('node:stream').Duplex | http2.Http2ServerResponse) => {
    seen.push(`${req.httpVersion} ${String(req.headers[':protocol'] ?? '-')} ${String(req.url)}`)
    if (req.httpVersionMajor === 1) {
      (second as import('node:stream').Duplex).end('HTTP/1.1 200 Connection Established\r\n\r\n')
      return
    }
    // The app serves one WebSocket path itself and only watches the others.
    if (req.headers[':protocol'] === 'websocket' && req.url !== '/ws/own') return
    (second as http2.Http2ServerResponse).writeHead(200, { 'x-by': 'app' })
  })
  const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
  socket.on('error', () => {})
  socket.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')
  const [reply] = await within(10_000, once(socket, 'data'), 'the app\'s answer to HTTP/1.1 CONNECT') as [Buffer]
  t.match(reply.toString(), /^HTTP\/1\.1 200 Connection Established/, 'HTTP/1.1 CONNECT answered by the app')
  socket.destroy()
  const session = await h2ConnectSession(t, 'tls', port)
  const plain = session.request({ ':method': 'CONNECT', ':authority': 'example.com:443' })
  plain.on('error', () => {})
  const [head] = await within(10_000, once(plain, 'response'), 'the app\'s answer to a plain h2 CONNECT') as [http2.IncomingHttpHeaders]
  t.equal(head['x-by'], 'app', 'a plain h2 CONNECT answered by the app')
  plain.close(http2.constants.NGHTTP2_CANCEL)
  const own = extendedConnect(session, '/ws/own')
  t.equal((await within(10_000, own.response, 'the app\'s answer to /ws/own'))['x-by'], 'app', 'a WebSocket the app answered is left to it')
  const mine = extendedConnect(session, '/ws/mine')
  const response = await within(10_000, mine.response, 'the proxy\'s answer to /ws/mine')
  t.equal(response[':status'], 200)
  t.equal(response['x-by'], undefined, 'a WebSocket the app only watched is the proxy\'s')
  t.equal(up.handshakes.length, 1, 'only that one reached the upstream')
  t.equal(up.handshakes[0].url, '/mine')
  t.same(seen, ['1.1 - example.com:443', '2.0 - undefined', '2.0 websocket /ws/own', '2.0 websocket /ws/mine'])
  own.stream.close(http2.constants.NGHTTP2_CANCEL)
  mine.stream.close(http2.constants.NGHTTP2_CANCEL)
})
