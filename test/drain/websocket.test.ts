// Graceful drain of WebSocket tunnels: on app.close() each side gets a `1001 Going Away` close
// frame at a frame boundary (masked towards the upstream), close() returns as soon as the close
// handshakes finish, a tunnel mid-frame waits for the frame's end, and a side that never
// answers (or a frame that never ends) is cut at the grace.
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import https from 'node:https'
import Fastify, { type FastifyServerOptions } from 'fastify'
import t from 'tap'
import proxy from '../../plugins/proxy/index.js'
import { WebSocketServer, type WebSocket } from 'ws'
import {
  gone, openClient, parseReply, portOf, proxyApp, rawClient, rawTunnel, rawUpstream, SWITCH, upgradeRequest, wsUpstream
} from '../helpers/ws-servers.js'
import { selfSignedCertificate } from '../helpers/tls.js'
import { within } from '../helpers/bounded.js'

const GRACE = 5000
const GOING_AWAY_UNMASKED = Buffer.from([0x88, 0x02, 0x03, 0xe9])

interface FrameOptions { fin?: boolean, rsv1?: boolean, mask?: Buffer }

/** One RFC 6455 frame, built independently of the proxy's parser. */
function frame (opcode: number, payload: Buffer, { fin = true, rsv1 = false, mask }: FrameOptions = {}): Buffer {
  const length = payload.length
  const extended = length < 126 ? Buffer.alloc(0) : Buffer.alloc(length < 65536 ? 2 : 8)
  if (length >= 65536) extended.writeBigUInt64BE(BigInt(length))
  else if (length >= 126) extended.writeUInt16BE(length)
  const first = (fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode
  const second = (mask !== undefined ? 0x80 : 0) | (length < 126 ? length : length < 65536 ? 126 : 127)
  const body = Buffer.from(payload)
  if (mask !== undefined) for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4]
  return Buffer.concat([Buffer.from([first, second]), extended, mask ?? Buffer.alloc(0), body])
}

interface Parsed { opcode: number, masked: boolean, payload: Buffer }

/** Every complete frame in `bytes` (payloads unmasked), and how many bytes are left over. */
function parseFrames (bytes: Buffer): { frames: Parsed[], rest: number } {
  const frames: Parsed[] = []
  let at = 0
  while (bytes.length - at >= 2) {
    const masked = (bytes[at + 1] & 0x80) !== 0
    let length = bytes[at + 1] & 0x7f
    let head = 2
    if (length === 126) { length = bytes.readUInt16BE(at + 2); head = 4 } else if (length === 127) { length = Number(bytes.readBigUInt64BE(at + 2)); head = 10 }
    const mask = masked ? bytes.subarray(at + head, at + head + 4) : null
    if (masked) head += 4
    if (bytes.length - at < head + length) break
    const payload = Buffer.from(bytes.subarray(at + head, at + head + length))
    if (mask !== null) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4]
    frames.push({ opcode: bytes[at] & 0x0f, masked, payload })
    at += head + length
  }
  return { frames, rest: bytes.length - at }
}

function openFds (): number {
  return readdirSync('/proc/self/fd').length
}

function closeCode (f: Parsed | undefined): number | undefined {
  return f?.opcode === 0x8 ? f.payload.readUInt16BE(0) : undefined
}

/** The close codes each `ws` endpoint saw, server side, by connection order. */
function upstreamCloses (up: Awaited<ReturnType<typeof wsUpstream>>): Array<Promise<number>> {
  const closes: Array<Promise<number>> = []
  up.wss.on('connection', (ws: WebSocket) => {
    closes.push(new Promise(resolve => ws.once('close', (code: number) => resolve(code))))
  })
  return closes
}

t.test('ws clients and a ws upstream: both sides get 1001 and close() returns at once', async (t) => {
  const up = await wsUpstream(t)
  const serverCloses = upstreamCloses(up)
  const { app, url } = await proxyApp(t, { upstream: up.url, wsCloseGrace: GRACE })
  const baseFds = openFds()
  // permessage-deflate is agreed end to end: compressed frames (RSV1 set) cross the tunnel.
  const clients = await within(5000, Promise.all([1, 2, 3].map(async i => await openClient(`${url}/drain${i}`))), 'three open tunnels')
  for (const ws of clients) {
    ws.send('x'.repeat(70_000))
    const [echo] = await within(5000, once(ws, 'message'), 'the echo of a large message')
    t.equal(String(echo).length, 70_000, 'a large compressed message crossed before the drain')
  }
  const clientCloses = clients.map(async ws => await once(ws, 'close'))
  const started = Date.now()
  await within(GRACE, app.close(), 'close() returning before the grace')
  const took = Date.now() - started
  t.ok(took < GRACE / 2, `close() returned after ${took} ms (grace ${GRACE} ms)`)
  const seen = await within(5000, Promise.all(clientCloses), 'the close of every client')
  t.same(seen.map(([code]) => code as number), [1001, 1001, 1001], 'every client got 1001 Going Away')
  t.same(await within(5000, Promise.all(serverCloses), 'the close of every upstream session'), [1001, 1001, 1001], 'every upstream session got 1001 Going Away')
  // `ws` emits 'close' once its TCP connection has closed: the client side is already done.
  const upstreamClosed = async (): Promise<void> => { while (up.sockets.size > 0) await once([...up.sockets][0], 'close') }
  await within(5000, upstreamClosed(), 'the close of every upstream connection')
  t.equal(up.sockets.size, 0, 'client and upstream connections are closed')
  t.ok(openFds() <= baseFds, `file descriptors back to baseline (${openFds()} vs ${baseFds})`)
})

t.test('the upstream mid-frame: the client gets the whole frame, then 1001; the upstream gets a masked 1001 at once', async (t) => {
  const up = await rawUpstream(t)
  const { app, port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}`, wsCloseGrace: GRACE })
  const { client, upstream, fromUpstream, fromClient, upstreamGot } = await within(5000, rawTunnel(t, port, up), 'an open raw tunnel')
  const payload = Buffer.alloc(300, 'p')
  const big = frame(0x2, payload, { rsv1: true })
  // Half a frame, its header split too: 16-bit length, 1 + 2 header bytes, then 100 payload bytes.
  upstream.write(big.subarray(0, 1))
  await within(5000, client.nextData(SWITCH.length + 1), 'the first header byte at the client')
  upstream.write(big.subarray(1, 104))
  await within(5000, client.nextData(SWITCH.length + 104), '104 bytes of the frame at the client')
  const started = Date.now()
  const closing = app.close()
  // The client->upstream direction is between frames: its close frame goes out at once.
  await within(GRACE / 2, upstreamGot(8), 'a close frame at the upstream')
  const [toUpstream] = parseFrames(fromClient()).frames
  t.equal(toUpstream.masked, true, 'the close frame to the upstream is masked')
  t.equal(closeCode(toUpstream), 1001, 'the upstream got 1001')
  t.equal(fromUpstream().length, 104, 'no close frame to the client while its frame is unfinished')
  // The rest of the frame, and in the same write a frame that must not be passed on.
  upstream.write(Buffer.concat([big.subarray(104), frame(0x1, Buffer.from('after close'))]))
  await within(5000, client.nextData(SWITCH.length + big.length + 4), 'the rest of the frame and a close frame at the client')
  const received = parseFrames(fromUpstream())
  t.equal(received.frames.length, 2, 'the frame, then one more')
  t.same(received.frames[0].payload, payload, 'the interrupted frame arrived whole')
  t.same(fromUpstream().subarray(big.length), GOING_AWAY_UNMASKED, 'then an unmasked 1001, and nothing after it')
  // Both answer with their close frame; the proxy then ends both connections.
  client.socket.write(frame(0x8, Buffer.from([0x03, 0xe9]), { mask: Buffer.from([1, 2, 3, 4]) }))
  upstream.write(frame(0x8, Buffer.from([0x03, 0xe9])))
  await within(GRACE, Promise.all([client.closed, gone(upstream), closing]), 'the close of both connections and close() returning before the grace')
  const took = Date.now() - started
  t.ok(took < GRACE / 2, `close() returned after ${took} ms (grace ${GRACE} ms)`)
  t.equal(fromClient().length, 8, 'the client\'s close answer is not passed on: the upstream got one close frame')
  t.same(fromUpstream().subarray(big.length), GOING_AWAY_UNMASKED, 'nor the upstream\'s: the client got one close frame')
})

t.test('the client mid-header: the upstream gets every frame whole, then a masked 1001', async (t) => {
  const up = await rawUpstream(t)
  const { app, port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}`, wsCloseGrace: GRACE })
  const { client, upstream, fromUpstream, fromClient, upstreamGot } = await within(5000, rawTunnel(t, port, up), 'an open raw tunnel')
  const mask = Buffer.from([0xa1, 0xb2, 0xc3, 0xd4])
  // Every length form, a fragmented message with a ping between its fragments, split anywhere.
  const frames = [
    frame(0x1, Buffer.from('seven'), { mask }),
    frame(0x2, Buffer.alloc(300, 1), { mask, rsv1: true }),
    frame(0x1, Buffer.from('frag-'), { mask, fin: false }),
    frame(0x9, Buffer.alloc(0), { mask }),
    frame(0x0, Buffer.from('ment'), { mask }),
    frame(0x2, Buffer.alloc(70_000, 2), { mask })
  ]
  const before = Buffer.concat(frames)
  const cuts = [1, 2, 6, 13, 15, 330, 341, 350, 353, 360, 361, 362, 368, 375, 380, 40_000, before.length]
  let from = 0
  for (const cut of cuts) {
    client.socket.write(before.subarray(from, cut))
    await within(5000, upstreamGot(cut), `${cut} bytes at the upstream`)
    from = cut
  }
  // The last frame: 64-bit length and mask, its 14-byte header cut after 5 bytes.
  const last = frame(0x2, Buffer.alloc(70_000, 3), { mask })
  client.socket.write(last.subarray(0, 5))
  await within(5000, upstreamGot(before.length + 5), '5 header bytes of the last frame at the upstream')
  const started = Date.now()
  const closing = app.close()
  await within(GRACE / 2, client.nextData(SWITCH.length + 4), 'a close frame at the client')
  t.same(fromUpstream(), GOING_AWAY_UNMASKED, 'the client got an unmasked 1001 at once')
  t.equal(fromClient().length, before.length + 5, 'no close frame to the upstream inside a header')
  client.socket.write(last.subarray(5, 12))
  await within(5000, upstreamGot(before.length + 12), 'the header of the last frame at the upstream')
  client.socket.write(Buffer.concat([last.subarray(12), frame(0x1, Buffer.from('next'), { mask })]))
  await within(5000, upstreamGot(before.length + last.length + 8), 'the last frame and a close frame at the upstream')
  const seen = parseFrames(fromClient())
  t.equal(seen.rest, 0, 'only whole frames reached the upstream')
  t.same(fromClient().subarray(0, before.length + last.length), Buffer.concat([before, last]), 'every frame byte for byte')
  const close = seen.frames.at(-1)
  t.equal(seen.frames.length, frames.length + 2, 'then exactly one more frame')
  t.equal(close?.masked, true, 'masked')
  t.equal(closeCode(close), 1001, '1001 Going Away')
  upstream.write(frame(0x8, Buffer.from([0x03, 0xe9])))
  client.socket.write(frame(0x8, Buffer.from([0x03, 0xe9]), { mask }))
  await within(GRACE, Promise.all([client.closed, gone(upstream), closing]), 'the close of both connections and close() returning before the grace')
  const took = Date.now() - started
  t.ok(took < GRACE / 2, `close() returned after ${took} ms (grace ${GRACE} ms)`)
  t.equal(fromClient().length, before.length + last.length + 8, 'the "next" frame after the boundary was never passed on')
})

t.test('a frame that never ends is cut at the grace, without a close frame inside it', async (t) => {
  const grace = 1000
  const up = await rawUpstream(t)
  const { app, port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}`, wsCloseGrace: grace })
  const { client, upstream, fromUpstream, fromClient, upstreamGot } = await within(5000, rawTunnel(t, port, up), 'an open raw tunnel')
  upstream.write(frame(0x2, Buffer.alloc(200, 7)).subarray(0, 50))
  await within(5000, client.nextData(SWITCH.length + 50), '50 bytes of the frame at the client')
  const started = Date.now()
  const closing = app.close()
  await within(grace, upstreamGot(8), 'a close frame at the upstream')
  t.equal(closeCode(parseFrames(fromClient()).frames[0]), 1001, 'the upstream got 1001 at once')
  // The drain closed the listener at once: a new upgrade cannot even connect.
  await t.rejects(within(5000, openClient(`ws://127.0.0.1:${port}/ws/late`), 'a refusal of the new connection'), /ECONNREFUSED/, 'a new connection during the drain is refused')
  t.equal(up.connections.length, 1, 'and never reaches the upstream')
  await within(grace + 5000, closing, 'close() returning')
  const took = Date.now() - started
  t.ok(took >= grace - 50 && took < grace + 2000, `close() returned after ${took} ms (grace ${grace} ms)`)
  await within(5000, Promise.all([client.closed, gone(upstream)]), 'the close of both connections')
  t.equal(fromUpstream().length, 50, 'the client got the partial frame and no close frame: it sees an abnormal close')
})

t.test('a client that never answers the close frame is cut at the grace; the upstream closes cleanly at once', async (t) => {
  const grace = 1000
  const up = await wsUpstream(t)
  const serverCloses = upstreamCloses(up)
  const { app, port } = await proxyApp(t, { upstream: up.url, wsCloseGrace: grace })
  const client = await rawClient(t, port)
  client.socket.write(upgradeRequest('/ws/mute'))
  while (!client.received().includes('\r\n\r\n')) await within(5000, client.nextData(client.received().length + 1), 'the handshake answer')
  const headLength = client.received().indexOf('\r\n\r\n') + 4
  t.equal(parseReply(client.received()).status, 101)
  const started = Date.now()
  const closing = app.close()
  t.equal(await within(grace, serverCloses[0], 'the close of the upstream session'), 1001, 'the upstream got 1001 and finished its close handshake')
  const upstreamClosedAfter = Date.now() - started
  await within(grace, client.nextData(headLength + 4), 'a close frame at the client')
  t.same(client.received().subarray(headLength), GOING_AWAY_UNMASKED, 'the client got 1001')
  await within(grace + 5000, closing, 'close() returning')
  const took = Date.now() - started
  t.ok(upstreamClosedAfter < grace / 2, `the upstream session closed after ${upstreamClosedAfter} ms`)
  t.ok(took >= grace - 50 && took < grace + 2000, `close() returned after ${took} ms (grace ${grace} ms)`)
  await within(5000, client.closed, 'the close of the silent client\'s connection')
  t.equal(client.received().length, headLength + 4, 'the silent client was cut after its 1001, with nothing more')
})

t.test('a handshake waiting for the upstream at close() is refused with 503', async (t) => {
  const up = await rawUpstream(t)
  const { app, port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}`, wsCloseGrace: GRACE })
  const client = await rawClient(t, port)
  client.socket.write(upgradeRequest('/ws/slow'))
  const conn = await within(5000, up.next(), 'a connection to the upstream')
  t.match(await within(5000, conn.head, 'the handshake at the upstream'), /^GET \/slow HTTP\/1\.1\r\n/, 'the upstream got the handshake')
  const started = Date.now()
  await within(GRACE, app.close(), 'close() returning before the grace')
  const took = Date.now() - started
  t.ok(took < GRACE / 2, `close() returned after ${took} ms`)
  await within(5000, client.closed, 'the close of the client connection')
  const reply = parseReply(client.received())
  t.equal(reply.status, 503)
  t.same(JSON.parse(reply.body), { statusCode: 503, code: 'FST_STREAMLINE_PROXY_SHUTTING_DOWN', error: 'Service Unavailable', message: 'The proxy is shutting down' })
  await within(5000, gone(conn.socket), 'the end of the upstream connection')
  t.equal(conn.received().toString('latin1'), await conn.head, 'the upstream request was dropped after its head: nothing more reached the upstream')
})

t.test('an upgrade whose hooks were still running when the drain began is refused with 503', async (t) => {
  const up = await rawUpstream(t)
  let entered: () => void = () => {}
  const inHook = new Promise<void>(resolve => { entered = resolve })
  let release: () => void = () => {}
  const released = new Promise<void>(resolve => { release = resolve })
  const app = Fastify({ logger: false })
  // A slow auth check: the upgrade was routed before close() and reaches the proxy after it.
  app.addHook('onRequest', async () => {
    entered()
    await released
  })
  await app.register(proxy, { upstream: `http://127.0.0.1:${up.port}`, prefix: '/ws', websocket: true, wsCloseGrace: GRACE })
  // Registered after the proxy, so it runs once the proxy's own preClose (the drain) has begun.
  await app.register(async child => { child.addHook('preClose', async () => release()) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  const client = await rawClient(t, portOf(app.server))
  client.socket.write(upgradeRequest('/ws/late'))
  await within(5000, inHook, 'the upgrade in its onRequest hook')
  const started = Date.now()
  await within(GRACE, app.close(), 'close() returning before the grace')
  const took = Date.now() - started
  t.ok(took < GRACE / 2, `close() returned after ${took} ms`)
  await within(5000, client.closed, 'the close of the client connection')
  const reply = parseReply(client.received())
  t.equal(reply.status, 503)
  t.equal(JSON.parse(reply.body).code, 'FST_STREAMLINE_PROXY_SHUTTING_DOWN')
  t.equal(up.connections.length, 0, 'the upstream was never contacted')
})

t.test('over TLS on both hops (https ingress, wss upstream): both sides get 1001 at once', async (t) => {
  const { key, cert } = selfSignedCertificate(t)
  const server = https.createServer({ key, cert })
  const wss = new WebSocketServer({ server })
  const serverClose = new Promise<number>(resolve => {
    wss.on('connection', ws => {
      ws.on('message', data => ws.send(data))
      ws.once('close', (code: number) => resolve(code))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { wss.close(); server.closeAllConnections(); server.close() })
  const { app, port } = await proxyApp(t, {
    upstream: 'http://127.0.0.1:9',
    wsUpstream: `wss://127.0.0.1:${portOf(server)}`,
    tls: { ca: cert },
    wsCloseGrace: GRACE,
    // The helper's type knows only plain-HTTP server options; Fastify takes `https` the same way.
    fastify: { https: { key, cert } } as FastifyServerOptions
  })
  const ws = await within(5000, openClient(`wss://127.0.0.1:${port}/ws/secure`, undefined, { ca: cert }), 'an open wss tunnel')
  ws.send('over tls')
  const [echo] = await within(5000, once(ws, 'message'), 'the echo over TLS')
  t.equal(String(echo), 'over tls', 'the tunnel runs over TLS on both hops')
  const closed = once(ws, 'close')
  const started = Date.now()
  await within(GRACE, app.close(), 'close() returning before the grace')
  const took = Date.now() - started
  t.ok(took < GRACE / 2, `close() returned after ${took} ms (grace ${GRACE} ms)`)
  t.equal((await within(5000, closed, 'the close of the client'))[0], 1001, 'the client got 1001')
  t.equal(await within(5000, serverClose, 'the close of the upstream session'), 1001, 'the upstream got 1001')
})
