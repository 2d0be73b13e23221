import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, HTTPMethods, RouteOptions } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { Http2ServerRequest } from 'node:http2'
import { errorBody } from '../../../lib/error-body.js'
import { abortSide } from '../../../lib/http2-response.js'
import { TunnelRegistry } from './registry.js'
import { installUpgradeDispatch, isWebSocketUpgrade, upgradeHead } from './dispatch.js'
import { InvalidUpgradeError, ShuttingDownError } from '../errors.js'
import { Handshake, type HandshakeSettings } from './handshake.js'
import { Http1Client, type ClientSide } from './client-side.js'
import { Http2Client } from './h2-client.js'
import { installExtendedConnect, isExtendedConnect } from './extended-connect.js'
import { sendError } from '../upstream-errors.js'
import type { FastifyError } from '@fastify/error'
import type { ProxySettings } from '../options.js'
import { compileTarget, mapUrl, upstreamUrl, type ProxyTarget } from '../target.js'
import { asArray } from '../../../lib/as-array.js'
import { wsRequestHeaders, wsTarget } from '../ws-client.js'

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

/**
 * The pass-through as a proxy registration configures it: upgrades go to `wsUpstream` (or
 * `upstream`) through the same path mapping and safety checks as plain HTTP.
 */
export function proxyUpgrade (instance: FastifyInstance, settings: ProxySettings): UpgradeHooks {
  const target = compileTarget({
    upstream: settings.wsUpstream ?? settings.upstream,
    prefix: instance.prefix,
    rewritePrefix: settings.rewritePrefix
  })
  return webSocketUpgrade(instance, {
    // preRewrite and wsClientOptions (@fastify/http-proxy): as for plain requests, then the query string.
    target: wsTarget(preRewritten(settings, instance.prefix, target), settings.compat.wsClient),
    // A tunnel's close handshake never outlasts the drain of the server's other connections.
    timings: { ...settings.wsTimings, closeGrace: Math.min(settings.wsTimings.closeGrace, settings.drainTimeout) },
    tls: settings.tls,
    rewriteRequestHeaders: wsRequestHeaders(settings.rewriteRequestHeaders, settings.compat.wsClient),
    rewriteHeaders: settings.rewriteHeaders
  })
}

/** The handshake's upstream URL, through `preRewrite` when there is one (its result is checked like a request's). */
function preRewritten (settings: ProxySettings, prefix: string, target: ProxyTarget): (request: FastifyRequest) => URL {
  const preRewrite = settings.compat.preRewrite
  if (preRewrite === null) return request => upstreamUrl(request, target)
  return request => mapUrl(preRewrite(request.url, request.params, prefix), request, target, 'confined')
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

  function rejectInvalidUpgrade (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (isUpgrade(request.raw) && !isWebSocketUpgrade(request.raw)) {
      // The socket left the HTTP parser: whatever follows the head cannot be read as HTTP.
      reply.raw.shouldKeepAlive = false
      reply.code(400).send(errorBody(new InvalidUpgradeError()))
      return
    }
    done()
  }

  function passUpgrade (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (!isUpgrade(request.raw) && !isExtendedConnect(request.raw)) return done()
    // Resolved before hijacking: a refused path gets the same answer as over plain HTTP.
    let target: URL
    try {
      target = settings.target(request)
    } catch (err) {
      // An answer to an upgrade is the connection's last (the HTTP parser has let go of it).
      reply.raw.shouldKeepAlive = false
      // As for plain HTTP: ours (bad path, bad upstream URL) get their JSON answer; an exception
      // from a user's `upstream` function goes to the app's error handler.
      if (!String((err as FastifyError).code).startsWith('FST_STREAMLINE_PROXY_')) return done(err as Error)
      sendError(reply, err as FastifyError)
      return
    }
    // Routed before app.close() began, but its hooks (a slow auth check) ran into the drain.
    if (tunnels.draining) {
      reply.raw.shouldKeepAlive = false
      sendError(reply, new ShuttingDownError())
      return
    }
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

  return { onRequest: rejectInvalidUpgrade, preHandler: passUpgrade, methods: http2 ? ['CONNECT'] : [] }
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
