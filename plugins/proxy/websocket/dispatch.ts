import type { FastifyInstance } from 'fastify'
import { ServerResponse, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'
import { Server as TlsServer } from 'node:tls'
import { listenFirst } from './server-listener.js'
import { closeGracefully } from './graceful-close.js'
import { afterPendingResponses, answersPending, holdPipelinedUpgrades, type HttpSocket } from './pipelined.js'

const kUpgradeHead = Symbol('fastify-streamline.upgrade-head')

interface WithHead {
  [kUpgradeHead]?: Buffer
}

/** The bytes the client sent after its handshake in the same packet(s) Node parsed it from. */
export function upgradeHead (raw: IncomingMessage): Buffer {
  return (raw as IncomingMessage & WithHead)[kUpgradeHead] ?? EMPTY
}

const EMPTY = Buffer.alloc(0)

/**
 * Makes upgrade requests reach Fastify's router, once per server. Node hands an upgrade to
 * `server.on('upgrade')` listeners only, with the socket detached from the HTTP parser and
 * the bytes after the handshake in `head`. This listener runs first and records `head`; the
 * decision waits until every other listener has run, and is made per upgrade:
 * - another listener took the socket (@fastify/websocket routes every upgrade; an app's own
 *   handler takes its paths): a second answer on the same socket would corrupt it, so it is
 *   left alone. @fastify/websocket keeps `head` under a private symbol; ours is the copy here;
 * - none did (there is none, or they only watch): this listener routes a WebSocket upgrade
 *   itself, the same way, on a response
 *   bound to the socket that closes the connection once it is done (the parser is gone, so
 *   no keep-alive: a refused or plain answer is the connection's last). Any other upgrade
 *   (`Upgrade: h2c` from `curl --http2`, a POST with a body) goes back to Node's HTTP parser
 *   as a plain request without `Upgrade`, as it would be if no listener existed.
 * Either way, an upgrade pipelined behind requests still being answered on the same
 * keep-alive connection reaches no listener before their answers are written
 * (holdPipelinedUpgrades); the check in `dispatch` only backs that up.
 * The choice is made per event, so the registration order of the two plugins does not matter.
 */
export function installUpgradeDispatch (app: FastifyInstance): void {
  const server = app.server
  const route = (raw: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!isWebSocketUpgrade(raw)) return reparseAsPlainRequest(server, raw, socket, head)
    socket.on('error', destroyOnError)
    const res = new ServerResponse(raw)
    res.shouldKeepAlive = false
    res.assignSocket(socket as Parameters<ServerResponse['assignSocket']>[0])
    res.once('finish', () => closeGracefully(socket))
    app.routing(raw, res)
  }
  const dispatch = (raw: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (!answersPending(socket)) return route(raw, socket, head)
    afterPendingResponses(server, socket, () => route(raw, socket, head))
  }
  const onUpgrade = (raw: IncomingMessage, socket: Duplex, head: Buffer): void => {
    (raw as IncomingMessage & WithHead)[kUpgradeHead] = head
    if (server.listenerCount('upgrade') === 1) return dispatch(raw, socket, head)
    // The other listeners run after this one in the same emit: what they did is known once it
    // returns, at the microtask queued now.
    const untouched = socketUse(socket)
    queueMicrotask(() => {
      if (socketUse(socket) === untouched && (socket as HttpSocket)._httpMessage == null) dispatch(raw, socket, head)
    })
  }
  if (listenFirst(app, 'upgrade', onUpgrade)) holdPipelinedUpgrades(app)
}

/**
 * A fingerprint of what has been done with an upgraded socket: the listeners on it, bytes
 * written, whether it flows or is gone. A listener that takes the socket (ws's handleUpgrade,
 * a tunnel, a refusal) changes it at once; one that only looks at the request does not.
 */
function socketUse (socket: Duplex): string {
  let listeners = 0
  for (const name of socket.eventNames()) listeners += socket.listenerCount(name)
  const written = (socket as Duplex & { bytesWritten?: number }).bytesWritten ?? 0
  return `${listeners}:${written + socket.writableLength}:${String(socket.readableFlowing)}:${String(socket.destroyed)}`
}

/** RFC 6455 4.1: a GET over HTTP/1.1 asking for exactly `websocket`, with no body. */
export function isWebSocketUpgrade (raw: IncomingMessage): boolean {
  const { headers } = raw
  return raw.method === 'GET' &&
    raw.httpVersion === '1.1' &&
    headers.upgrade?.trim().toLowerCase() === 'websocket' &&
    headers['transfer-encoding'] === undefined &&
    (headers['content-length'] === undefined || headers['content-length'] === '0')
}

/**
 * Hands a non-WebSocket upgrade back to Node's HTTP server as a fresh connection whose first
 * bytes are the same request without `Upgrade` (and without the `upgrade` token in
 * `Connection`), followed by whatever came after it. Node's parser then serves it, body and
 * keep-alive included, exactly like a request that never asked to upgrade. Hand-written
 * because Node 20 has no hook to decline an upgrade (`shouldUpgradeCallback` is Node 24).
 */
function reparseAsPlainRequest (server: Server, raw: IncomingMessage, socket: Duplex, head: Buffer): void {
  let text = `${raw.method ?? 'GET'} ${raw.url ?? '/'} HTTP/${raw.httpVersion}\r\n`
  const headers = raw.rawHeaders
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i].toLowerCase()
    if (name === 'upgrade') continue
    let value = headers[i + 1]
    if (name === 'connection') {
      value = value.split(',').map(token => token.trim()).filter(token => token !== '' && token.toLowerCase() !== 'upgrade').join(', ')
      if (value === '') continue
    }
    text += `${headers[i]}: ${value}\r\n`
  }
  // Node decoded the head as latin1; encoding it back the same way restores the original bytes.
  socket.unshift(Buffer.concat([Buffer.from(text + '\r\n', 'latin1'), head]))
  // A TLS server (https, and http2's secure server with allowHTTP1, which picks HTTP/1.1 by the
  // socket's ALPN result) attaches Node's HTTP parser on 'secureConnection'; its 'connection'
  // means a raw TCP socket, and would start a second TLS handshake on this decrypted one.
  server.emit(server instanceof TlsServer ? 'secureConnection' : 'connection', socket)
}

function destroyOnError (this: Duplex): void {
  this.destroy()
}
