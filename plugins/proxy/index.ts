import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import { StreamSafety } from '../../lib/stream-safety.js'
import { budgetLeft, deadlineHeaders } from '../deadline/index.js'
import { resolveOptions, FALLBACK_BODY_TIMEOUT, FALLBACK_HEADERS_TIMEOUT, type ProxySettings } from './options.js'
import type { ProxyOptions } from './types.js'
import { compileTarget } from './target.js'
import { answerNotFound } from './not-found.js'
import { forward, replyFromOptions, type Registration } from './forward.js'
import { kCall, type BudgetHeaders } from './upstream/call.js'
import { createDispatcher, type ProxyDispatcher } from './upstream/dispatcher.js'
import { UpstreamPool } from './upstream/pool.js'
import { SseHeartbeat } from './response/sse-heartbeat.js'
import { drainConnections, trackConnections } from './lifecycle/connections.js'
import { EventStreamDrain } from './lifecycle/event-stream-drain.js'
import { GrpcDrain } from './lifecycle/grpc-drain.js'
import { fromParameters } from './compat/from-parameters.js'
import { registerReplyFrom } from './one-send.js'
import { proxyUpgrade } from './upgrade.js'
import { withUpgradeHooks } from './websocket/index.js'

// The proxy plugin's wiring: options -> one registration -> its routes, the WebSocket upgrade
// hookup, and the shutdown hooks. README.md beside this file maps the rooms; forward.ts is the
// path of one request.

export type {
  ProxyOptions, ProxyTlsOptions, ProxyReplyOptions, UpstreamOption, UpstreamRequestHeaders,
  ReplicaOption, ResolveOption, BalanceOption, OutlierDetectionOptions, HealthCheckOptions, SseResumeOptions
} from './types.js'
export type { WebSocketTimingOptions } from './websocket/options.js'
export { compileTarget, upstreamUrl, type ProxyTarget, type TargetOptions } from './target.js'
export * from './errors.js'

const noBudget: BudgetHeaders = () => ({})
const unlimited = (): number => Infinity

async function streamlineProxy (app: FastifyInstance, options: ProxyOptions): Promise<void> {
  const settings = resolveOptions(options)
  trackConnections(app.server, app.initialConfig.http2 === true)
  const withDeadline = app.hasRequestDecorator('deadline')
  const dispatcher = dispatcherFor(settings, withDeadline)
  // Its own encapsulated context: reply-from, the pass-through body parser and the routes
  // stay inside it, so the plugin can be registered any number of times with different prefixes.
  await app.register(async function proxyContext (instance) {
    const registration = register(instance, settings, withDeadline)
    // A stable shape for Fastify's request objects: the call's slot exists before the first request.
    instance.decorateRequest(kCall, null)
    // proxyPayloads: false (@fastify/http-proxy): the app's parsers apply and reply-from re-sends the parsed body.
    if (settings.compat.proxyPayloads) {
      instance.removeAllContentTypeParsers()
      instance.addContentTypeParser('*', passRequestStream)
    }
    await registerReplyFrom(instance, registration, {
      undici: dispatcher as unknown as { request: never },
      disableCache: true,
      disableRequestLogging: true,
      contentTypesToEncode: settings.compat.contentTypesToEncode
    })
    instance.decorateReply('fromParameters', function (this: FastifyReply, url: string, params?: Record<string, unknown>, prefix?: string) {
      return fromParameters(registration, this, url, params ?? {}, prefix ?? '/')
    })
    if (settings.compat.ignored.length > 0) {
      instance.log.warn({ options: settings.compat.ignored }, 'proxy: options ignored: the WebSocket tunnel relays the client\'s handshake and then frames as bytes')
    }
    addShutdownHooks(instance, registration, dispatcher)
    if (registration.pool !== null) addPoolHooks(instance, registration.pool, dispatcher)
    const upgrade = settings.websocket ? proxyUpgrade(instance, settings, registration.pool) : null
    for (const url of settings.compat.routes) instance.route(withUpgradeHooks(routeOptions(registration, url), upgrade))
  }, { prefix: settings.prefix })
  await answerNotFound(app, settings.prefix)
}

/**
 * With the deadline plugin its phases rule and undici's timers are off; without it the
 * fallbacks never cut a quiet SSE stream before 5 minutes. Explicit options always win, and are
 * kept to the millisecond by the upstream handler; the fallbacks stay on undici's coarser clock.
 */
function dispatcherFor (settings: ProxySettings, withDeadline: boolean): ProxyDispatcher {
  const { connections, keepAliveTimeout, connectTimeout, http2, tls, compat, headersTimeout, bodyTimeout } = settings
  const agent = { connections, keepAliveTimeout, connectTimeout, http2, tls, agentOptions: compat.agent, given: compat.dispatcher }
  const fallbacks = {
    headersTimeout: headersTimeout !== undefined || withDeadline ? 0 : FALLBACK_HEADERS_TIMEOUT,
    bodyTimeout: bodyTimeout !== undefined || withDeadline ? 0 : FALLBACK_BODY_TIMEOUT
  }
  return createDispatcher(agent, fallbacks, { headersTimeout: headersTimeout ?? 0, bodyTimeout: bodyTimeout ?? 0 })
}

/** What the registration's requests share (forward.ts). */
function register (instance: FastifyInstance, settings: ProxySettings, withDeadline: boolean): Registration {
  const registration: Registration = {
    settings,
    target: compileTarget({ upstream: settings.upstream, prefix: instance.prefix, rewritePrefix: settings.rewritePrefix }),
    withDeadline,
    budgetHeaders: withDeadline ? deadlineHeaders : noBudget,
    drain: new EventStreamDrain(settings.drainRetry),
    grpcDrain: new GrpcDrain(),
    heartbeat: settings.sseHeartbeat > 0 ? new SseHeartbeat(settings.sseHeartbeat) : null,
    safety: new StreamSafety(instance),
    prefix: instance.prefix,
    fromOptions: {},
    remaining: withDeadline ? budgetLeft : unlimited,
    pool: settings.pool === null ? null : new UpstreamPool(settings.pool, instance.log),
    sseResume: settings.sseResume,
    resumeDownloads: settings.resumeDownloads
  }
  registration.fromOptions = replyFromOptions(registration)
  return registration
}

function addShutdownHooks (instance: FastifyInstance, registration: Registration, dispatcher: ProxyDispatcher): void {
  // Nothing awaited: the server's close, which Fastify runs after every preClose hook, waits for the drained connections.
  instance.addHook('preClose', function drainProxy (done) {
    drainConnections(instance.server, registration.settings.drainTimeout, instance.log)
    registration.drain.start()
    registration.grpcDrain.start()
    done()
  })
  // After the server closed, so after the drain: destroying the pool earlier would cut the streams.
  instance.addHook('onClose', async () => { await dispatcher.destroy() })
}

/** A pool resolves its replicas before the server serves; its timers stop when the app closes. */
function addPoolHooks (instance: FastifyInstance, pool: UpstreamPool, dispatcher: ProxyDispatcher): void {
  instance.addHook('onReady', async () => { await pool.start(dispatcher.agent) })
  instance.addHook('onClose', async () => { pool.close() })
}

/** Bodies are not parsed: the request stream itself becomes `request.body` and is piped upstream. */
function passRequestStream (_request: FastifyRequest, payload: unknown, done: (err: null, body: unknown) => void): void {
  done(null, payload)
}

function routeOptions (registration: Registration, url: string): RouteOptions {
  const { settings } = registration
  const route: RouteOptions & { compress: false, decompress: false } = {
    method: settings.httpMethods,
    url,
    // HEAD goes upstream as HEAD, not as a GET whose body Fastify would discard.
    exposeHeadRoute: false,
    config: settings.config,
    // @fastify/compress, when the app has it, must neither buffer streams nor touch bodies:
    // like nginx (gzip_proxied off) the upstream's encoding passes through unchanged.
    compress: false,
    decompress: false,
    handler: function proxyHandler (request, reply) { return forward(registration, request, reply) }
  }
  // Fresh arrays per route: other plugins' onRoute hooks may append to them, and more handlers
  // (e.g. the WebSocket pass-through's preHandler) can be appended here.
  if (settings.compat.constraints !== undefined) route.constraints = settings.compat.constraints
  if (settings.onRequest.length > 0) route.onRequest = [...settings.onRequest]
  if (settings.preValidation.length > 0) route.preValidation = [...settings.preValidation]
  if (settings.preHandler.length > 0) route.preHandler = [...settings.preHandler]
  return route
}

export default fp(streamlineProxy, {
  fastify: '5.x',
  name: 'fastify-streamline-proxy'
})
