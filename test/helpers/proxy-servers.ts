import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import type { Test } from 'tap'
import deadline, { type DeadlineOptions } from '../../plugins/deadline/index.js'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'

/** An upstream http server on 127.0.0.1; every request it saw is kept. */
export interface Upstream {
  url: string
  server: http.Server
  seen: http.IncomingMessage[]
}

export async function upstream (t: Test, handler: http.RequestListener): Promise<Upstream> {
  const seen: http.IncomingMessage[] = []
  const server = http.createServer((req, res) => { seen.push(req); handler(req, res) })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${port(server)}`, server, seen }
}

/** A raw TCP upstream: the test writes whatever bytes it wants on each connection. */
export async function rawUpstream (t: Test, onSocket: (socket: net.Socket, request: string) => void): Promise<string> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => sockets.delete(socket))
    let head = ''
    const onData = (data: Buffer): void => {
      head += data.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      socket.off('data', onData)
      onSocket(socket, head)
    }
    socket.on('data', onData)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { for (const s of sockets) s.destroy(); server.close() })
  return `http://127.0.0.1:${port(server)}`
}

export interface ProxyAppOptions {
  deadline?: DeadlineOptions
  fastify?: FastifyServerOptions
  /** Runs after the deadline plugin and before the proxy (e.g. register @fastify/compress). */
  before?: (app: FastifyInstance) => Promise<void> | void
}

/** A Fastify app with the proxy (and optionally the deadline plugin first), listening on 127.0.0.1. */
export async function proxyApp (t: Test, options: ProxyOptions | ProxyOptions[], extra: ProxyAppOptions = {}): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify({ logger: false, ...extra.fastify })
  if (extra.deadline !== undefined) await app.register(deadline, extra.deadline)
  if (extra.before !== undefined) await extra.before(app)
  for (const o of Array.isArray(options) ? options : [options]) await app.register(proxy, o)
  await app.listen({ port: 0, host: '127.0.0.1' })
  // An HTTP/2 server has no closeAllConnections: its sessions end with close().
  t.teardown(async () => { (app.server as Partial<http.Server>).closeAllConnections?.(); await app.close() })
  return { app, url: `http://127.0.0.1:${port(app.server)}` }
}

export function port (server: net.Server): number {
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening')
  return address.port
}

export { receive, type Received } from './receive.js'

/** Sends raw bytes on a new connection and resolves with everything received until the server closes or `until` matches. */
export function rawRequest (url: string, bytes: string, until?: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1')
    let received = ''
    socket.setEncoding('latin1')
    socket.on('data', (data: string) => {
      received += data
      if (until?.test(received) === true) { socket.destroy(); resolve(received) }
    })
    socket.on('error', reject)
    socket.on('close', () => resolve(received))
    socket.write(bytes, 'latin1')
  })
}

/** Resolves when `emitter` emits `event`, with the time it took. */
export async function timed (emitter: NodeJS.EventEmitter, event: string): Promise<number> {
  const start = Date.now()
  await once(emitter, event)
  return Date.now() - start
}

/** A port nothing listens on (bound, then closed): connecting to it is refused. */
export async function closedPort (): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const closed = port(server)
  server.close()
  await once(server, 'close')
  return closed
}
