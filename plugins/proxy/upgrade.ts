import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { IncomingMessage } from 'node:http'
import { errorBody } from '../../lib/error-body.js'
import { TunnelRegistry } from './tunnel.js'
import { installUpgradeDispatch, upgradeHead } from './ws-dispatch.js'
import { InvalidUpgradeError } from './ws-errors.js'
import { Handshake } from './ws-handshake.js'
import type { TunnelTimings } from './ws-options.js'

export interface UpgradeSettings {
  /** The upstream URL (http: or https:) for this request's handshake; throws to refuse it. */
  target: (request: FastifyRequest) => URL
  timings: TunnelTimings
}

export interface UpgradeHooks {
  onRequest: (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void
  preHandler: (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void
}

/**
 * WebSocket pass-through for one proxy registration: route-level hooks for its routes,
 * upgrade dispatch on the server, and shutdown of its open tunnels in preClose.
 * - onRequest refuses upgrades that cannot be tunnelled, before any body would be read;
 * - preHandler, the last hook before the handler (so the app's auth hooks ran), hijacks a
 *   valid upgrade and hands it to a Handshake. Plain requests pass on to the HTTP proxy.
 */
export function webSocketUpgrade (app: FastifyInstance, settings: UpgradeSettings): UpgradeHooks {
  installUpgradeDispatch(app)
  const tunnels = new TunnelRegistry()
  app.addHook('preClose', async () => await tunnels.drain(settings.timings.closeGrace))

  function rejectInvalidUpgrade (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (isUpgrade(request.raw) && !isWebSocketUpgrade(request.raw)) {
      // The socket left the HTTP parser: whatever follows the head cannot be read as HTTP.
      reply.code(400).header('connection', 'close').send(errorBody(new InvalidUpgradeError()))
      return
    }
    done()
  }

  function passUpgrade (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (!isUpgrade(request.raw)) return done()
    // Resolved before hijacking: a refused path gets the same answer as over plain HTTP.
    const target = settings.target(request)
    reply.hijack()
    const handshake = new Handshake(request, reply, settings.timings, upgradeHead(request.raw))
    tunnels.add(request.raw.socket, () => handshake.cut())
    handshake.start(target)
  }

  return { onRequest: rejectInvalidUpgrade, preHandler: passUpgrade }
}

/** Node sets `upgrade` only on requests it handed to an 'upgrade' listener. */
function isUpgrade (raw: IncomingMessage): boolean {
  return (raw as IncomingMessage & { upgrade?: boolean }).upgrade === true
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
