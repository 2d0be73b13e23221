import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import http, { type IncomingMessage } from 'node:http'
import net, { type AddressInfo, type Socket } from 'node:net'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { WebSocketServer, WebSocket, type ServerOptions } from 'ws'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'
import { PROMPTLY, within } from './bounded.js'

export interface Teardown {
  teardown: (fn: () => unknown) => void
}

export function portOf (server: net.Server): number {
  return (server.address() as AddressInfo).port
}

/** A `ws` upstream that records every handshake it received. */
export interface WsUpstream {
  url: string
  port: number
  wss: WebSocketServer
  server: http.Server
  handshakes: IncomingMessage[]
  sockets: Set<Socket>
}

export async function wsUpstream (t: Teardown, options: ServerOptions = {}): Promise<WsUpstream> {
  const server = http.createServer((_req, res) => { res.statusCode = 426; res.end('upgrade required') })
  const sockets = new Set<Socket>()
  server.on('connection', socket => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  const wss = new WebSocketServer({ server, ...options })
  const handshakes: IncomingMessage[] = []
  wss.on('headers', (_headers, req) => { handshakes.push(req) })
  wss.on('connection', ws => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    wss.close()
    server.close()
  })
  const port = portOf(server)
  return { url: `http://127.0.0.1:${port}`, port, wss, server, handshakes, sockets }
}

/** A raw TCP upstream: the test writes the bytes. Each connection's received bytes are kept. */
export interface RawUpstream {
  port: number
  server: net.Server
  connections: Array<{ socket: Socket, received: () => Buffer }>
  next: () => Promise<{ socket: Socket, received: () => Buffer, head: Promise<string> }>
}

export async function rawUpstream (t: Teardown): Promise<RawUpstream> {
  const waiting: Array<(c: { socket: Socket, received: () => Buffer, head: Promise<string> }) => void> = []
  const ready: Array<{ socket: Socket, received: () => Buffer, head: Promise<string> }> = []
  const connections: RawUpstream['connections'] = []
  const server = net.createServer({ allowHalfOpen: true }, socket => {
    const chunks: Buffer[] = []
    let resolveHead: (head: string) => void = () => {}
    const head = new Promise<string>(resolve => { resolveHead = resolve })
    socket.on('data', chunk => {
      chunks.push(chunk)
      const text = Buffer.concat(chunks).toString('latin1')
      const end = text.indexOf('\r\n\r\n')
      if (end !== -1) resolveHead(text.slice(0, end + 4))
    })
    socket.on('error', () => {})
    const conn = { socket, received: () => Buffer.concat(chunks), head }
    connections.push(conn)
    const waiter = waiting.shift()
    if (waiter !== undefined) waiter(conn)
    else ready.push(conn)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    for (const c of connections) c.socket.destroy()
    server.close()
  })
  const next = async (): Promise<{ socket: Socket, received: () => Buffer, head: Promise<string> }> => {
    const conn = ready.shift()
    if (conn !== undefined) return conn
    return await new Promise(resolve => waiting.push(resolve))
  }
  return { port: portOf(server), server, connections, next }
}

export interface TestProxyOptions extends ProxyOptions {
  /** Registered on the app before the proxy (e.g. the deadline plugin, auth hooks). */
  before?: (app: FastifyInstance) => Promise<void> | void
  fastify?: FastifyServerOptions
}

/**
 * An app with the proxy under `/ws` (by default) and `websocket: true`. Open tunnels get a
 * short close grace so a test's teardown never waits long for a client it still holds.
 */
export async function proxyApp (t: Teardown, options: TestProxyOptions): Promise<{ app: FastifyInstance, port: number, url: string }> {
  const { before, fastify, ...proxyOptions } = options
  const app = Fastify({ logger: false, ...fastify })
  if (before !== undefined) await before(app)
  const prefix = proxyOptions.prefix ?? '/ws'
  await app.register(proxy, { websocket: true, wsCloseGrace: 100, ...proxyOptions, prefix })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  const port = portOf(app.server)
  return { app, port, url: `ws://127.0.0.1:${port}${prefix}` }
}

/** Opens a `ws` client and resolves once it is open, or rejects with the server's answer. */
export async function openClient (url: string, protocols?: string | string[], options: ConstructorParameters<typeof WebSocket>[2] = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, options)
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve)
    ws.once('error', reject)
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${String(res.statusCode)}`)))
  })
  return ws
}

export interface RawReply {
  head: string
  status: number
  body: string
}

/** A raw client connection; `write` whatever bytes, `reply()` waits for the whole answer until the server closes. */
export async function rawClient (t: Teardown, port: number): Promise<{ socket: Socket, received: () => Buffer, closed: Promise<void>, nextData: (minBytes: number) => Promise<Buffer> }> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true })
  await once(socket, 'connect')
  const chunks: Buffer[] = []
  const listeners: Array<() => void> = []
  socket.on('data', chunk => {
    chunks.push(chunk)
    for (const l of listeners.splice(0)) l()
  })
  socket.on('error', () => {})
  // The server is done with us when it ends its side (our socket is half-open) or closes.
  const closed = new Promise<void>(resolve => {
    socket.once('end', resolve)
    socket.once('close', resolve)
  })
  t.teardown(() => socket.destroy())
  const received = (): Buffer => Buffer.concat(chunks)
  const nextData = async (minBytes: number): Promise<Buffer> => {
    while (received().length < minBytes) {
      if (socket.destroyed) throw new Error(`socket closed after ${received().length} bytes`)
      // One 'close' listener per wait, removed when data comes first: they piled up on a long read.
      await new Promise<void>(resolve => {
        const done = (): void => {
          socket.off('close', done)
          resolve()
        }
        listeners.push(done)
        socket.once('close', done)
      })
    }
    return received()
  }
  return { socket, received, closed, nextData }
}

export function parseReply (bytes: Buffer): RawReply {
  const text = bytes.toString('latin1')
  const end = text.indexOf('\r\n\r\n')
  const head = end === -1 ? text : text.slice(0, end + 4)
  return { head, status: Number(head.split(' ')[1]), body: end === -1 ? '' : text.slice(end + 4) }
}

export function upgradeRequest (path: string, extra: string[] = []): string {
  return [
    `GET ${path} HTTP/1.1`,
    'Host: 127.0.0.1',
    'Connection: Upgrade',
    'Upgrade: websocket',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ...extra,
    '', ''
  ].join('\r\n')
}

/**
 * A raw upgrade request (node:net, so that `..` and `\\` reach the server as written); resolves
 * with the status line of the answer, within 5 s.
 */
export async function rawUpgradeStatus (port: number, path: string): Promise<string> {
  const socket = net.connect(port, '127.0.0.1')
  socket.setEncoding('latin1')
  socket.write(upgradeRequest(path))
  let received = ''
  const statusLine = async (): Promise<void> => {
    for await (const chunk of socket) {
      received += chunk as string
      if (received.includes('\r\n')) break
    }
  }
  await within(PROMPTLY, statusLine(), `the answer to the upgrade for ${path}`)
  socket.destroy()
  return received.split('\r\n', 1)[0]
}

export const ACCEPT_FOR_SAMPLE_KEY = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo='

/** Resolves when the peer ended or reset the connection (half-open sockets never emit close on FIN alone). */
export async function gone (socket: Socket): Promise<void> {
  if (socket.destroyed || socket.readableEnded) return
  await new Promise<void>(resolve => {
    socket.once('end', resolve)
    socket.once('close', resolve)
  })
}

/** The 101 a raw upstream answers the sample key with. */
export const SWITCH = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${ACCEPT_FOR_SAMPLE_KEY}\r\n\r\n`

/** A raw client and a raw upstream joined by one tunnel through the proxy, the 101 already read. */
export async function rawTunnel (t: Teardown, port: number, up: RawUpstream): Promise<{
  client: Awaited<ReturnType<typeof rawClient>>, upstream: Socket, fromUpstream: () => Buffer, fromClient: () => Buffer, upstreamGot: (n: number) => Promise<void>
}> {
  const client = await rawClient(t, port)
  client.socket.write(upgradeRequest('/ws/tunnel'))
  const conn = await up.next()
  const head = await conn.head
  conn.socket.write(SWITCH)
  await client.nextData(SWITCH.length)
  const fromClient = (): Buffer => conn.received().subarray(head.length)
  const upstreamGot = async (n: number): Promise<void> => {
    while (fromClient().length < n) {
      if (conn.socket.destroyed) throw new Error(`upstream closed after ${fromClient().length} bytes`)
      await once(conn.socket, 'data')
    }
  }
  return { client, upstream: conn.socket, fromUpstream: () => client.received().subarray(SWITCH.length), fromClient, upstreamGot }
}

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** A raw upstream for the resource tests' many short tunnels. */
export interface HandingUpstream {
  port: number
  /** The upstream side of the next handshake to arrive. */
  next: () => Promise<Socket>
  open: Set<Socket>
}

/**
 * Answers each handshake with a valid 101 for its own key (`GET /silent...`: nothing; `GET
 * /refused...`: a 403) and hands its socket to the test.
 */
export async function handingUpstream (t: Teardown): Promise<HandingUpstream> {
  const waiting: Array<(s: Socket) => void> = []
  const open = new Set<Socket>()
  const server = net.createServer(socket => {
    open.add(socket)
    socket.once('close', () => open.delete(socket))
    socket.on('error', () => {})
    let head = ''
    socket.on('data', chunk => {
      if (head.includes('\r\n\r\n')) return
      head += chunk.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      if (head.startsWith('GET /refused')) {
        socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno')
      } else if (!head.startsWith('GET /silent')) {
        const key = /sec-websocket-key: (\S+)/i.exec(head)?.[1] ?? ''
        const accept = createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64')
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`)
      }
      waiting.shift()?.(socket)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return { port: portOf(server), next: async () => await new Promise(resolve => waiting.push(resolve)), open }
}
