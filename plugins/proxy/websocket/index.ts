import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, HTTPMethods, RouteOptions } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { Http2ServerRequest } from 'node:http2'
import { sendError } from '../../../lib/error-answer.js'
import { abortSide } from '../../../lib/abrupt-end.js'
import { TunnelRegistry } from './registry.js'
import { installUpgradeDispatch, isWebSocketUpgrade, upgradeHead } from './dispatch.js'
import { InvalidUpgradeError, isProxyError, ShuttingDownError } from '../errors.js'
import { Handshake, type HandshakeSettings } from './handshake.js'
import { Http1Client, type ClientSide } from './client-side.js'
import { Http2Client } from './h2-client.js'
import { installExtendedConnect, isExtendedConnect } from './extended-connect.js'
import { answerError } from '../answer-error.js'
import { asArray } from '../../../lib/as-array.js'

export interface UpgradeSettings extends HandshakeSettings {
  /** The upstream URL (http: or https:) for this request's handshake; throws (400/404) to refuse it. */
  target: (request: FastifyRequest) => URL
}

export interface UpgradeHooks {
  onRequest: (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void
  preHandler: (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) => void
  /** Methods the routes take besides their own: CONNECT on an HTTP/2 server (RFC 8441 WebSockets). */
  methods: HTTPMethods[]
}

/** Appends the hooks to a proxy route: after the user's own, so auth hooks run first. */
export function withUpgradeHooks (route: RouteOptions, hooks: UpgradeHooks | null): RouteOptions {
  if (hooks === null) return route
  return {
    ...route,
    method: [...asArray(route.method), ...hooks.methods],
    onRequest: [...asArray(route.onRequest), hooks.onRequest],
    preHandler: [...asArray(route.preHandler), hooks.preHandler]
  }
}

/**
 * WebSocket pass-through for one proxy registration: route-level hooks for its routes,
 * upgrade dispatch on the server (and extended CONNECT dispatch on an HTTP/2 one), and
 * shutdown of its open tunnels in preClose (a close frame to both sides of each, then cut
 * whatever is left after the grace).
 * - onRequest refuses upgrades that cannot be tunnelled, before any body would be read (they
 *   only get here when another upgrade listener, e.g. @fastify/websocket, routes every upgrade:
 *   ours turns them back into plain requests);
 * - preHandler, the last hook before the handler (so the app's auth hooks ran), hijacks a
 *   valid upgrade (or HTTP/2 extended CONNECT) and hands it to a Handshake. Plain requests
 *   pass on to the HTTP proxy.
 */
export function webSocketUpgrade (app: FastifyInstance, settings: UpgradeSettings): UpgradeHooks {
  installUpgradeDispatch(app)
  const http2 = app.initialConfig.http2 === true
  if (http2) installExtendedConnect(app)
  const tunnels = new TunnelRegistry()
  // Not awaited: several registrations drain their tunnels at once, and the server's close (which
  // Fastify runs after the preClose hooks) waits for their sockets anyway.
  app.addHook('preClose', (done) => {
    tunnels.drain(settings.timings.closeGrace).catch(err => app.log.error({ err }, 'websocket drain failed'))
    done()
  })
  function passUpgrade (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (!isUpgrade(request.raw) && !isExtendedConnect(request.raw)) return done()
    const target = upgradeTarget(settings, tunnels, request, reply, done)
    if (target !== null) startHandshake(settings, tunnels, request, reply, target)
  }
  return { onRequest: rejectInvalidUpgrade, preHandler: passUpgrade, methods: http2 ? ['CONNECT'] : [] }
}

function rejectInvalidUpgrade (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  if (isUpgrade(request.raw) && !isWebSocketUpgrade(request.raw)) {
    // The socket left the HTTP parser: whatever follows the head cannot be read as HTTP.
    reply.raw.shouldKeepAlive = false
    sendError(reply, new InvalidUpgradeError())
    return
  }
  done()
}

/**
 * The upgrade's upstream URL, resolved before hijacking so that a refused path gets the same
 * answer as over plain HTTP; null when the upgrade has been answered (or handed to `done`).
 */
function upgradeTarget (settings: UpgradeSettings, tunnels: TunnelRegistry, request: FastifyRequest,
  reply: FastifyReply, done: HookHandlerDoneFunction): URL | null {
  let target: URL
  try {
    target = settings.target(request)
  } catch (err) {
    // An answer to an upgrade is the connection's last (the HTTP parser has let go of it).
    reply.raw.shouldKeepAlive = false
    // As for plain HTTP: ours (bad path, bad upstream URL) get their JSON answer; an exception
    // from a user's `upstream` function goes to the app's error handler.
    if (isProxyError(err)) answerError(reply, err)
    else done(err as Error)
    return null
  }
  // Routed before app.close() began, but its hooks (a slow auth check) ran into the drain.
  if (tunnels.draining) {
    reply.raw.shouldKeepAlive = false
    answerError(reply, new ShuttingDownError())
    return null
  }
  return target
}

/** Takes the connection (or HTTP/2 stream) from Fastify and hands it to a Handshake. */
function startHandshake (settings: UpgradeSettings, tunnels: TunnelRegistry, request: FastifyRequest,
  reply: FastifyReply, target: URL): void {
  reply.hijack()
  const side = clientSide(request)
  const client = side.socket
  // Gone while the app's hooks ran (a slow auth check): its close event has already fired,
  // so nothing would ever end a handshake started now.
  if (client.destroyed || client.readableEnded) {
    abortSide(client)
    return
  }
  const handshake = new Handshake(request, reply, settings, side, upgradeHead(request.raw), () => tunnels.delete(handshake))
  handshake.start(target)
  tunnels.add(handshake)
}

/** An HTTP/1.1 upgrade takes over the connection; an HTTP/2 WebSocket is one stream of it. */
function clientSide (request: FastifyRequest): ClientSide {
  if (!isExtendedConnect(request.raw)) return new Http1Client(request)
  return new Http2Client((request.raw as unknown as Http2ServerRequest).stream)
}

/** Node sets `upgrade` only on requests it handed to an 'upgrade' listener. */
function isUpgrade (raw: IncomingMessage): boolean {
  return (raw as IncomingMessage & { upgrade?: boolean }).upgrade === true
}
