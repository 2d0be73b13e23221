import type { EventEmitter } from 'node:events'
import type { Server, ServerResponse } from 'node:http'
import type { Http2Server, Http2Session } from 'node:http2'
import { Server as NetServer, type Socket } from 'node:net'
import { Server as TlsServer, type TLSSocket } from 'node:tls'
import type { FastifyBaseLogger } from 'fastify'

// The connections of a server, so that a drain can retire each one gracefully and cut the rest
// at its deadline. Hand-written rather than Node's closeIdleConnections()/closeAllConnections():
// the former destroys a connection whose last response has ended but not yet reached the
// network, which cuts that response (over TLS there are always bytes in flight then), and
// Node 20's HTTP/2 server has neither. One Set entry per connection, nothing per request.

interface Connections {
  /** Every TCP connection: what the cut at the deadline destroys. */
  sockets: Set<Socket>
  /** HTTP/1 connections at the HTTP layer (after the TLS handshake on a TLS server). */
  http1: Set<Socket>
  sessions: Set<Http2Session>
  draining: boolean
  deadline: number
  cut: NodeJS.Timeout | undefined
  /** When the deadline cut the connections still open; 0 before. */
  cutAt: number
}

const servers = new WeakMap<Server, Connections>()

/** Starts following the server's connections (once per server, whatever the number of registrations). */
export function trackConnections (server: Server, http2: boolean): void {
  if (servers.has(server)) return
  const sockets = new Set<Socket>()
  // Over cleartext, a connection is an HTTP/1 connection from the start, unless the server
  // speaks HTTP/2 (then every connection is a session).
  const http1 = server instanceof TlsServer || http2 ? new Set<Socket>() : sockets
  const connections: Connections = { sockets, http1, sessions: new Set(), draining: false, deadline: 0, cut: undefined, cutAt: 0 }
  servers.set(server, connections)
  server.on('connection', (socket: Socket) => add(sockets, socket))
  if (server instanceof TlsServer) {
    server.on('secureConnection', (socket: TLSSocket) => {
      if (socket.alpnProtocol === 'h2') return
      add(http1, socket)
      // Its handshake ended during the drain.
      if (connections.draining) retire(socket)
    })
  }
  server.on('session', (session: Http2Session) => {
    add(connections.sessions, session)
    if (connections.draining) session.close()
    else boundStreams(server, session)
  })
  server.once('close', () => clearTimeout(connections.cut))
}

/** Node's default: no limit at all. */
const UNLIMITED_STREAMS = 2 ** 32 - 1
/** RFC 9113 §6.5.2 advises no fewer than 100; nginx allows 128, Go 250. */
const DEFAULT_MAX_STREAMS = 100

/**
 * Bounds what one HTTP/2 connection can hold open at once, unless the app chose a bound itself
 * (`http2: { settings: { maxConcurrentStreams } }`). Without one, a client that opens thousands
 * of streams in one read and resets them (rapid reset) made the proxy open as many upstream
 * connections before it saw a reset; with it, one read can start at most this many upstream
 * requests, whose connections the next ones reuse. WebSocket tunnels over HTTP/2 (RFC 8441)
 * are streams too, so it bounds them per connection as well.
 */
function boundStreams (server: Server, session: Http2Session): void {
  if (session.localSettings.maxConcurrentStreams !== UNLIMITED_STREAMS) return
  const bound = { maxConcurrentStreams: DEFAULT_MAX_STREAMS }
  // This session has sent its first SETTINGS already; the next sessions start with the bound.
  session.settings(bound)
  ;(server as unknown as Http2Server).updateSettings(bound)
}

function add<T extends EventEmitter> (set: Set<T>, item: T): void {
  // A socket the upgrade dispatch hands back to the HTTP parser is emitted again.
  if (set.has(item)) return
  set.add(item)
  item.once('close', () => set.delete(item))
}

/**
 * Stops accepting, lets every connection finish its response in flight and then closes it,
 * and cuts whatever is still open `timeout` ms later (the longest of the calls wins).
 */
export function drainConnections (server: Server, timeout: number, log: FastifyBaseLogger): void {
  const connections = servers.get(server)
  if (connections === undefined) return
  if (!connections.draining) {
    connections.draining = true
    // net's close() stops accepting without http's sweep of idle connections; Fastify's own
    // close() later would sweep too, so the sweep is switched off for this server from here on.
    if (server.listening) NetServer.prototype.close.call(server)
    if (typeof server.closeIdleConnections === 'function') server.closeIdleConnections = noop
    for (const socket of connections.http1) retire(socket)
    for (const session of connections.sessions) session.close()
  }
  const deadline = Date.now() + timeout
  if (deadline <= connections.deadline) return
  connections.deadline = deadline
  clearTimeout(connections.cut)
  connections.cut = setTimeout(cut, timeout, connections, timeout, log).unref()
}

/** Closes an HTTP/1 connection once its response in flight (if any) is complete. */
function retire (socket: Socket): void {
  const http = socket as Socket & { parser?: unknown, _httpMessage?: ServerResponse | null }
  // Gone, or no longer HTTP (an upgraded connection, a WebSocket tunnel: Node freed its parser).
  if (socket.destroyed || http.parser == null) return
  const res = http._httpMessage
  if (res == null) {
    // Between two requests: a FIN after whatever is still being written.
    socket.end()
  } else if (!res.headersSent) {
    // Node then sends `Connection: close` and closes the connection after this response.
    res.shouldKeepAlive = false
  } else {
    // After Node's own end-of-response work, which may start a pipelined request's response.
    res.once('finish', () => setImmediate(retire, socket))
  }
}

function cut (connections: Connections, timeout: number, log: FastifyBaseLogger): void {
  if (connections.sockets.size === 0 && connections.sessions.size === 0) return
  log.warn({ drainTimeout: timeout, connections: connections.sockets.size }, 'drain timeout reached: cutting the connections still open')
  connections.cutAt = Date.now()
  for (const session of connections.sessions) session.destroy()
  for (const socket of connections.sockets) socket.destroy()
}

/** Whether the drain's deadline has cut this server's connections (for the stream:end channel). */
export function cutByDrain (server: Server): boolean {
  return (servers.get(server)?.cutAt ?? 0) > 0
}

function noop (): void {}
