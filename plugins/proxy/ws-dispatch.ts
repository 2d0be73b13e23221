import type { FastifyInstance } from 'fastify'
import { ServerResponse, type IncomingMessage, type Server } from 'node:http'
import type { Duplex } from 'node:stream'

const kUpgradeHead = Symbol('fastify-streamline.upgrade-head')
const installed = new WeakSet<Server>()

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
 * the bytes after the handshake in `head`. Two cases:
 * - another listener routes upgrades (@fastify/websocket does): a second router would answer
 *   the same socket twice, so this listener only records `head`, which that listener keeps
 *   under a private symbol, and lets it route;
 * - none does: this listener routes the request itself, the same way, on a response bound to
 *   the socket that closes the connection once it is done (the parser is gone, so no
 *   keep-alive: a refused or plain answer is the connection's last).
 * The choice is made per event, so the registration order of the two plugins does not matter.
 */
export function installUpgradeDispatch (app: FastifyInstance): void {
  const server = app.server
  if (installed.has(server)) return
  installed.add(server)
  const onUpgrade = (raw: IncomingMessage, socket: Duplex, head: Buffer): void => {
    (raw as IncomingMessage & WithHead)[kUpgradeHead] = head
    if (server.listenerCount('upgrade') > 1) return
    socket.on('error', destroyOnError)
    const res = new ServerResponse(raw)
    res.shouldKeepAlive = false
    res.assignSocket(socket as Parameters<ServerResponse['assignSocket']>[0])
    res.once('finish', () => closeGracefully(socket))
    app.routing(raw, res)
  }
  server.prependListener('upgrade', onUpgrade)
  app.addHook('onClose', (_instance, done) => {
    server.removeListener('upgrade', onUpgrade)
    installed.delete(server)
    done()
  })
}

/**
 * Ends a connection whose last response has been written. Unread client bytes are drained
 * first: closing a socket with unread input makes the kernel send RST, which can destroy the
 * response still in flight to the client.
 */
export function closeGracefully (socket: Duplex): void {
  if (socket.destroyed) return
  socket.resume()
  socket.end()
  if (socket.writableFinished) socket.destroy()
  else socket.once('finish', () => socket.destroy())
}

function destroyOnError (this: Duplex): void {
  this.destroy()
}
