import fp from 'fastify-plugin'
import replyFrom, { type FastifyReplyFromHooks } from '@fastify/reply-from'
import type { FastifyError } from '@fastify/error'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { resolveOptions, FALLBACK_BODY_TIMEOUT, FALLBACK_HEADERS_TIMEOUT, type ProxySettings } from './options.js'
import { compileTarget, upstreamUrl, type ProxyTarget } from './target.js'
import { attachCall, createDispatcher } from './dispatcher.js'
import { startCall, type BudgetHeaders, type ProxyCall } from './cancellation.js'
import { stripRequestOnly, withoutHopByHop } from './hop-by-hop.js'
import { setForwardedHeaders } from './forwarded.js'
import { relayResponse, type UpstreamResponse } from './response.js'
import { retryPolicy } from './retry.js'
import { addServerTiming } from './server-timing.js'
import { ProxyDrain } from './drain.js'
import { SseHeartbeat } from './sse-heartbeat.js'
import { StreamSafety } from '../../lib/stream-safety.js'
import { drainConnections, trackConnections } from './connections.js'
import { sendError, sendUpstreamError } from './upstream-errors.js'
import { BadPathError } from './errors.js'
import { deadlineHeaders } from '../deadline/index.js'
import type { ProxyOptions, UpstreamRequestHeaders } from './types.js'
import { proxyUpgrade, withUpgradeHooks } from './websocket/index.js'
import { answerNotFound } from './not-found.js'

export type { ProxyOptions, ProxyTlsOptions, ProxyReplyOptions, UpstreamOption, UpstreamRequestHeaders } from './types.js'
export type { WebSocketTimingOptions } from './websocket/options.js'
export { compileTarget, upstreamUrl, type ProxyTarget, type TargetOptions } from './target.js'
export * from './errors.js'

const noBudget: BudgetHeaders = () => ({})
const unlimited = (): number => Infinity

/** The per-registration wiring shared by every request of that registration. */
interface Proxy {
  settings: ProxySettings
  target: ProxyTarget
  withDeadline: boolean
  budget: BudgetHeaders
  drain: ProxyDrain
  /** Null when `sseHeartbeat` is off. */
  heartbeat: SseHeartbeat | null
  /** One check for both routes of the registration: they have the same hooks. */
  safety: StreamSafety
}

async function streamlineProxy (app: FastifyInstance, options: ProxyOptions): Promise<void> {
  const settings = resolveOptions(options)
  trackConnections(app.server, app.initialConfig.http2 === true)
  const withDeadline = app.hasRequestDecorator('deadline')
  // With the deadline plugin its phases rule and undici's timers are off; without it the
  // fallbacks never cut a quiet SSE stream before 5 minutes. Explicit options always win.
  const dispatcher = createDispatcher(settings, {
    headersTimeout: settings.headersTimeout ?? (withDeadline ? 0 : FALLBACK_HEADERS_TIMEOUT),
    bodyTimeout: settings.bodyTimeout ?? (withDeadline ? 0 : FALLBACK_BODY_TIMEOUT)
  })

  // Its own encapsulated context: reply-from, the pass-through body parser and the routes
  // stay inside it, so the plugin can be registered any number of times with different prefixes.
  await app.register(async function proxyContext (instance) {
    const proxy: Proxy = {
      settings,
      target: compileTarget({ upstream: settings.upstream, prefix: instance.prefix, rewritePrefix: settings.rewritePrefix }),
      withDeadline,
      budget: withDeadline ? deadlineHeaders : noBudget,
      drain: new ProxyDrain(settings.drainRetry),
      heartbeat: settings.sseHeartbeat > 0 ? new SseHeartbeat(settings.sseHeartbeat) : null,
      safety: new StreamSafety(app)
    }
    instance.removeAllContentTypeParsers()
    instance.addContentTypeParser('*', passRequestStream)
    await instance.register(replyFrom, { undici: dispatcher as unknown as { request: never }, disableCache: true, disableRequestLogging: true })
    // Nothing awaited: the server's close, which Fastify runs after every preClose hook, waits for the drained connections.
    instance.addHook('preClose', function drainProxy (done) {
      drainConnections(instance.server, settings.drainTimeout, instance.log)
      proxy.drain.start()
      done()
    })
    // After the server closed, so after the drain: destroying the pool earlier would cut the streams.
    instance.addHook('onClose', async () => { await dispatcher.destroy() })
    const upgrade = settings.websocket ? proxyUpgrade(instance, settings) : null
    for (const url of ['/', '/*']) instance.route(withUpgradeHooks(routeOptions(proxy, url), upgrade))
  }, { prefix: settings.prefix })
  await answerNotFound(app, settings.prefix)
}

/** Bodies are not parsed: the request stream itself becomes `request.body` and is piped upstream. */
function passRequestStream (_request: FastifyRequest, payload: unknown, done: (err: null, body: unknown) => void): void {
  done(null, payload)
}

function routeOptions (proxy: Proxy, url: string): RouteOptions {
  const { settings } = proxy
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
    handler: function proxyHandler (request, reply) { return forward(proxy, request, reply) }
  }
  // Fresh arrays per route: other plugins' onRoute hooks may append to them, and more handlers
  // (e.g. the WebSocket pass-through's preHandler) can be appended here.
  if (settings.onRequest.length > 0) route.onRequest = [...settings.onRequest]
  if (settings.preValidation.length > 0) route.preValidation = [...settings.preValidation]
  if (settings.preHandler.length > 0) route.preHandler = [...settings.preHandler]
  return route
}

/** One request: map the path, then let reply-from send it upstream with our signal and hooks. */
function forward (proxy: Proxy, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  let url: URL
  try {
    url = upstreamUrl(request, proxy.target)
  } catch (err) {
    // Ours (bad path, bad upstream URL) get their JSON answer; an exception thrown by a user's
    // `upstream` function goes to the app's error handler like any handler error.
    if (!String((err as FastifyError).code).startsWith('FST_STREAMLINE_PROXY_')) throw err
    sendError(reply, err as FastifyError)
    return reply
  }
  const call = startCall(request, reply, proxy.budget)
  try {
    reply.from(url.origin + url.pathname, fromOptions(proxy, call, request, reply, url))
  } catch (err) {
    // reply-from refuses some paths we allow (e.g. a segment starting with `..`, like `..foo`).
    if ((err as { statusCode?: number }).statusCode !== 400) throw err
    sendError(reply, new BadPathError('refused by the upstream client'))
  }
  return reply
}

function fromOptions (proxy: Proxy, call: ProxyCall, request: FastifyRequest, reply: FastifyReply, url: URL): FastifyReplyFromHooks {
  const { settings } = proxy
  const remaining = proxy.withDeadline ? () => request.deadline.remaining() : unlimited
  const rawQuery = url.search.slice(1)
  return {
    queryString: () => rawQuery,
    ...settings.replyOptions,
    // reply-from's header types are narrower than what it really passes (arrays, numbers).
    rewriteRequestHeaders: (_req, headers) => requestHeaders(settings, call, request, headers as UpstreamRequestHeaders) as IncomingHttpHeaders,
    rewriteHeaders: (headers) => responseHeaders(proxy, call, headers as OutgoingHttpHeaders, request) as IncomingHttpHeaders,
    onResponse: (_req, _reply, res) => relayResponse(call, request, reply, res as unknown as UpstreamResponse, proxy),
    onError: (_reply, { error }) => onUpstreamError(call, reply, error),
    // reply-from's types call the details Fastify objects; they are its own request options and undici's response.
    retryDelay: retryPolicy(call, request, settings.retries, remaining) as unknown as FastifyReplyFromHooks['retryDelay']
  }
}

function requestHeaders (settings: ProxySettings, call: ProxyCall, request: FastifyRequest, received: UpstreamRequestHeaders): UpstreamRequestHeaders {
  const headers = withoutHopByHop(received, true)
  stripRequestOnly(headers, request.body !== undefined)
  setForwardedHeaders(request, headers)
  const rewrite = settings.rewriteRequestHeaders
  const rewritten = rewrite === null ? headers : rewrite(request, headers)
  attachCall(rewritten, call)
  return rewritten
}

function responseHeaders (proxy: Proxy, call: ProxyCall, headers: OutgoingHttpHeaders, request: FastifyRequest): OutgoingHttpHeaders {
  // A copy: the upstream's own `Trailer` header is still needed when relaying the body.
  const clean = withoutHopByHop(headers, false)
  if (proxy.settings.serverTiming) addServerTiming(clean, call, request, proxy.withDeadline)
  const rewrite = proxy.settings.rewriteHeaders
  return rewrite === null ? clean : rewrite(clean, request)
}

function onUpstreamError (call: ProxyCall, reply: FastifyReply, error: Error): void {
  const reason = call.signal.reason as { code?: string } | undefined
  if (reason?.code === 'FST_STREAMLINE_CLIENT_DISCONNECTED') {
    reply.log.info('client disconnected; upstream request aborted')
    return
  }
  // The rest of a request body the upstream stopped reading is read by nobody: kept alive, the
  // connection would hang the uploading client. Close it after the answer, as the deadline does.
  if (!reply.request.raw.complete) reply.raw.shouldKeepAlive = false
  sendUpstreamError(reply, error)
}

export default fp(streamlineProxy, {
  fastify: '5.x',
  name: 'fastify-streamline-proxy'
})
