import fp from 'fastify-plugin'
import replyFrom, { type FastifyReplyFromHooks } from '@fastify/reply-from'
import type { FastifyError } from '@fastify/error'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import { resolveOptions, FALLBACK_BODY_TIMEOUT, FALLBACK_HEADERS_TIMEOUT, type ProxySettings } from './options.js'
import { compileTarget, mapTarget, type ProxyTarget, type UpstreamTarget } from './target.js'
import { attachCall, callOfHeaders, createDispatcher } from './dispatcher.js'
import { startCall, type BudgetHeaders, type ProxyCall } from './cancellation.js'
import { hasHopByHop, stripRequestOnly, withoutHopByHop } from './hop-by-hop.js'
import { setForwardedHeaders } from './forwarded.js'
import { relayResponse, type UpstreamResponse } from './response.js'
import { reportResponse } from './stream-report.js'
import { retryDelay, type AttemptDetails } from './retry.js'
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
import { rewriteLocations } from './location.js'
import { callOf, startedCall, targetFor } from './from-parameters.js'

export type { ProxyOptions, ProxyTlsOptions, ProxyReplyOptions, UpstreamOption, UpstreamRequestHeaders } from './types.js'
export type { WebSocketTimingOptions } from './websocket/options.js'
export { compileTarget, upstreamUrl, type ProxyTarget, type TargetOptions } from './target.js'
export * from './errors.js'

const noBudget: BudgetHeaders = () => ({})
const unlimited = (): number => Infinity
const deadlineRemaining = (request: FastifyRequest): number => request.deadline.remaining()

// The mapping of the request being proxied, for the registration's reply-from hooks: they are
// built once per registration (fromOptions) and find their request's state here, instead of
// a set of closures and an options object built for every request.
const kForwarding = Symbol('fastify-streamline.forwarding')

/** One proxied request's mapping and upstream call. */
interface Forwarding {
  call: ProxyCall
  target: ProxyTarget
  url: UpstreamTarget
  /** The request URL the upstream URL was mapped from (the raw URL, or a preRewrite result). */
  mapped: string
}

type WithForwarding = FastifyRequest & { [kForwarding]: Forwarding }

function forwardingOf (request: FastifyRequest): Forwarding {
  return (request as WithForwarding)[kForwarding]
}

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
  /** The registration's full prefix (parents' included), as @fastify/http-proxy's hooks receive it. */
  prefix: string
  /** A user's replyOptions.onResponse / onError: they replace the proxy's relay / error answer. */
  onResponse: FastifyReplyFromHooks['onResponse'] | undefined
  onError: FastifyReplyFromHooks['onError'] | undefined
  /** The reply-from options of every request of the registration (see kForwarding). */
  fromOptions: FastifyReplyFromHooks
  remaining: (request: FastifyRequest) => number
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
      safety: new StreamSafety(app),
      prefix: instance.prefix,
      onResponse: settings.replyOptions.onResponse,
      onError: settings.replyOptions.onError,
      fromOptions: {},
      remaining: withDeadline ? deadlineRemaining : unlimited
    }
    proxy.fromOptions = fromOptions(proxy)
    // A stable shape for Fastify's request objects: the slot exists before the first request.
    instance.decorateRequest(kForwarding, null)
    // proxyPayloads: false (@fastify/http-proxy): the app's parsers apply and reply-from re-sends the parsed body.
    if (settings.compat.proxyPayloads) {
      instance.removeAllContentTypeParsers()
      instance.addContentTypeParser('*', passRequestStream)
    }
    await instance.register(replyFrom, {
      undici: dispatcher as unknown as { request: never },
      disableCache: true,
      disableRequestLogging: true,
      contentTypesToEncode: settings.compat.contentTypesToEncode
    })
    instance.decorateReply('fromParameters', function fromParameters (this: FastifyReply, url: string, params?: Record<string, unknown>, prefix?: string) {
      return parametersFor(proxy, this, url, params ?? {}, prefix ?? '/')
    })
    if (settings.compat.ignored.length > 0) {
      instance.log.warn({ options: settings.compat.ignored }, 'proxy: options ignored: the WebSocket tunnel relays the client\'s handshake and then frames as bytes')
    }
    // Nothing awaited: the server's close, which Fastify runs after every preClose hook, waits for the drained connections.
    instance.addHook('preClose', function drainProxy (done) {
      drainConnections(instance.server, settings.drainTimeout, instance.log)
      proxy.drain.start()
      done()
    })
    // After the server closed, so after the drain: destroying the pool earlier would cut the streams.
    instance.addHook('onClose', async () => { await dispatcher.destroy() })
    const upgrade = settings.websocket ? proxyUpgrade(instance, settings) : null
    for (const url of settings.compat.routes) instance.route(withUpgradeHooks(routeOptions(proxy, url), upgrade))
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
  if (settings.compat.constraints !== undefined) route.constraints = settings.compat.constraints
  if (settings.onRequest.length > 0) route.onRequest = [...settings.onRequest]
  if (settings.preValidation.length > 0) route.preValidation = [...settings.preValidation]
  if (settings.preHandler.length > 0) route.preHandler = [...settings.preHandler]
  return route
}

/** One request: map the path, then let reply-from send it upstream with our signal and hooks. */
function forward (proxy: Proxy, request: FastifyRequest, reply: FastifyReply): unknown {
  const { preRewrite, handler } = proxy.settings.compat
  let mapped = request.raw.url ?? ''
  let url: UpstreamTarget
  try {
    if (preRewrite === null) {
      url = mapTarget(mapped, request, proxy.target, 'not-found')
    } else {
      mapped = preRewrite(request.url, request.params, proxy.prefix)
      url = mapTarget(mapped, request, proxy.target, 'confined')
    }
  } catch (err) {
    // Ours (bad path, bad upstream URL) get their JSON answer; an exception thrown by a user's
    // `upstream` function goes to the app's error handler like any handler error.
    if (!String((err as FastifyError).code).startsWith('FST_STREAMLINE_PROXY_')) throw err
    sendError(reply, err as FastifyError)
    return reply
  }
  // A preHandler that called reply.fromParameters has started the call already.
  const call = startedCall(request) ?? startCall(request, reply, proxy.budget, proxy.onResponse === undefined)
  ;(request as WithForwarding)[kForwarding] = { call, target: proxy.target, url, mapped }
  // @fastify/http-proxy's `handler(request, reply, dest, options)`: dest is the upstream path; the
  // origin travels in the options, for `reply.from(dest, options)` to reach the same upstream.
  if (handler !== null) return handler(request, reply, url.pathname, { ...proxy.fromOptions, getUpstream: () => url.origin })
  try {
    reply.from(url.origin + url.pathname, proxy.fromOptions)
  } catch (err) {
    // reply-from refuses some paths we allow (e.g. a segment starting with `..`, like `..foo`).
    if ((err as { statusCode?: number }).statusCode !== 400) throw err
    sendError(reply, new BadPathError('refused by the upstream client'))
  }
  return reply
}

/**
 * reply.fromParameters: the upstream path and the options `reply.from` needs to send it like the
 * proxy would. The request's latest call of it is the mapping its reply-from hooks use.
 */
function parametersFor (proxy: Proxy, reply: FastifyReply, given: string, params: Record<string, unknown>, prefix: string): { url: string, options: FastifyReplyFromHooks } {
  const { settings } = proxy
  const target = targetFor(proxy.target, proxy.prefix, settings.upstream, settings.rewritePrefix, prefix, params)
  const mapped = settings.compat.preRewrite === null ? given : settings.compat.preRewrite(given, params, prefix)
  const url = mapTarget(mapped, reply.request, target, 'unchanged')
  const call = callOf(reply.request, reply, proxy.budget, proxy.onResponse === undefined)
  ;(reply.request as WithForwarding)[kForwarding] = { call, target, url, mapped }
  return { url: url.pathname + url.search, options: { ...proxy.fromOptions, getUpstream: () => url.origin } }
}

/** The registration's reply-from options; each hook finds its request's mapping (kForwarding). */
function fromOptions (proxy: Proxy): FastifyReplyFromHooks {
  const { settings } = proxy
  // reply-from's types are narrower than what it really passes: header values may be arrays or
  // numbers, and retryDelay's details are its own request options and the upstream response.
  // Requests and replies are this app's (its types say any server's).
  return {
    queryString: (_search, _url, request) => forwardingOf(request as FastifyRequest).url.search.slice(1),
    ...settings.replyOptions,
    rewriteRequestHeaders: (request, headers) => requestHeaders(settings, request as FastifyRequest, headers as UpstreamRequestHeaders) as IncomingHttpHeaders,
    rewriteHeaders: (headers, request) => responseHeaders(proxy, request as FastifyRequest, headers as OutgoingHttpHeaders) as IncomingHttpHeaders,
    onResponse: proxy.onResponse === undefined
      ? (request, reply, res) => relayResponse(forwardingOf(request as FastifyRequest).call, request as FastifyRequest, reply as FastifyReply, res as unknown as UpstreamResponse, proxy)
      : (request, reply, res) => userResponse(proxy, forwardingOf(request as FastifyRequest).call, request, reply, res),
    onError: (reply, details) => onUpstreamError(proxy, reply as FastifyReply, details),
    retryDelay: (details) => retryOf(proxy, details as unknown as AttemptDetails)
  }
}

/** The retry policy for one attempt; reply-from gives it its own request options, which carry the call. */
function retryOf (proxy: Proxy, details: AttemptDetails): number | null {
  const call = callOfHeaders(details.req.headers)
  if (call === undefined) return null
  const { retries, compat } = proxy.settings
  return retryDelay(call, details, retries, proxy.remaining, compat.retryMethods)
}

function requestHeaders (settings: ProxySettings, request: FastifyRequest, received: UpstreamRequestHeaders): UpstreamRequestHeaders {
  // `received` is reply-from's own copy for this request, ours to change.
  const headers = hasHopByHop(received) ? withoutHopByHop(received, true) : received
  stripRequestOnly(headers, request.body !== undefined)
  setForwardedHeaders(request, headers)
  const rewrite = settings.rewriteRequestHeaders
  const rewritten = rewrite === null ? headers : rewrite(request, headers)
  attachCall(rewritten, forwardingOf(request).call)
  return rewritten
}

function responseHeaders (proxy: Proxy, request: FastifyRequest, headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const { call, mapped, target, url } = forwardingOf(request)
  // A copy: the upstream's own `Trailer` header is still needed when relaying the body.
  const clean = withoutHopByHop(headers, false)
  if (proxy.settings.serverTiming) addServerTiming(clean, call, request, proxy.withDeadline)
  if (proxy.settings.compat.rewriteLocation && (clean.location !== undefined || clean['content-location'] !== undefined)) {
    rewriteLocations(clean, mapped, target.prefix.length, url)
  }
  const rewrite = proxy.settings.rewriteHeaders
  return rewrite === null ? clean : rewrite(clean, request)
}

type OnResponseArgs = Parameters<NonNullable<FastifyReplyFromHooks['onResponse']>>

/**
 * A user's replyOptions.onResponse gets the upstream response instead of the proxy's relay: the
 * upstream call keeps its signal and timers, but the head is not flushed early, event streams are
 * not ended at an event boundary by a drain, trailers are dropped, and a body that fails mid-way is
 * handled by whatever the hook sends (README: Switching from @fastify/http-proxy).
 */

function userResponse (proxy: Proxy, call: ProxyCall, ...[request, reply, res]: OnResponseArgs): void {
  reportResponse(call, request as FastifyRequest, reply as FastifyReply, (res as unknown as UpstreamResponse).statusCode)
  proxy.onResponse?.(request, reply, res)
}

function onUpstreamError (proxy: Proxy, reply: FastifyReply, details: { error: Error }): void {
  const reason = forwardingOf(reply.request).call.signal.reason as { code?: string } | undefined
  if (reason?.code === 'FST_STREAMLINE_CLIENT_DISCONNECTED') {
    reply.log.info('client disconnected; upstream request aborted')
    return
  }
  // The rest of a request body the upstream stopped reading is read by nobody: kept alive, the
  // connection would hang the uploading client. Close it after the answer, as the deadline does.
  if (!reply.request.raw.complete) reply.raw.shouldKeepAlive = false
  // A user's replyOptions.onError answers instead of the proxy's 502/504.
  if (proxy.onError !== undefined) {
    proxy.onError(reply, details)
    return
  }
  const { error } = details
  sendUpstreamError(reply, error)
}

export default fp(streamlineProxy, {
  fastify: '5.x',
  name: 'fastify-streamline-proxy'
})
