import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { StreamSafety } from '../../lib/stream-safety.js'
import type { ProxySettings } from './options.js'
import type { UpstreamRequestHeaders } from './types.js'
import { mapTarget, type ProxyTarget, type UpstreamTarget } from './target.js'
import { BadPathError, isProxyError } from './errors.js'
import { answerError } from './answer-error.js'
import { sendUpstreamError } from './upstream-errors.js'
import { hasHopByHop, stripRequestOnly, withoutHopByHop } from './hop-by-hop.js'
import { setForwardedHeaders } from './forwarded.js'
import { onRequestAbort } from '../deadline/index.js'
import { attachCall, callOf, callOfHeaders, setCall, type BudgetHeaders, type UpstreamCall } from './upstream/call.js'
import { CallSignal } from './upstream/call-signal.js'
import type { UpstreamPool } from './upstream/pool.js'
import type { UpstreamResponse } from './upstream/handler.js'
import { retryDelay, type AttemptDetails } from './upstream/retry.js'
import type { EventStreamDrain } from './lifecycle/event-stream-drain.js'
import { relayResponse } from './response/relay.js'
import { answerGrpc } from './response/grpc-relay.js'
import type { GrpcDrain } from './lifecycle/grpc-drain.js'
import { reportResponse } from './response/stream-report.js'
import { addServerTiming } from './response/server-timing.js'
import { rewriteLocations } from './response/location.js'
import type { SseHeartbeat } from './response/sse-heartbeat.js'
import { callResume, type DownloadResumeSettings, type SseResumeSettings } from './upstream/sse-resume-options.js'
import { IDEMPOTENT } from './upstream/replica-attempt.js'

// One proxied request, top to bottom: the route's handler maps the path and hands the request
// to reply-from (`forward`), which calls back, in this order, into the registration's hooks
// below: the request headers for the upstream, each attempt through the dispatcher
// (upstream/dispatcher.ts) and the retry policy after it, then the response headers and the
// relay of the response to the client, or the answer to an upstream failure.

/** What every request of one proxy registration shares: built once, when it is registered. */
export interface Registration {
  settings: ProxySettings
  target: ProxyTarget
  withDeadline: boolean
  budgetHeaders: BudgetHeaders
  drain: EventStreamDrain
  grpcDrain: GrpcDrain
  /** Null when `sseHeartbeat` is off. */
  heartbeat: SseHeartbeat | null
  /** One check for both routes of the registration: they have the same hooks. */
  safety: StreamSafety
  /** The registration's full prefix (parents' included), as @fastify/http-proxy's hooks receive it. */
  prefix: string
  /** The reply-from options of every request of the registration (`replyFromOptions`). */
  fromOptions: FastifyReplyFromHooks
  remaining: (request: FastifyRequest) => number
  /** The upstream's replicas, when it is a pool; null for one upstream. */
  pool: UpstreamPool | null
  /** `sseResume` (upstream/sse-resume.ts); null when off. */
  sseResume: SseResumeSettings | null
  /** `resumeDownloads` (upstream/download-resume.ts); null when off. */
  resumeDownloads: DownloadResumeSettings | null
}

/** The route's handler: map the path, start the call, then let reply-from send it upstream. */
export function forward (registration: Registration, request: FastifyRequest, reply: FastifyReply): unknown {
  const { target, settings } = registration
  const { preRewrite, handler } = settings.compat
  let mapped = request.raw.url ?? ''
  let url: UpstreamTarget
  try {
    if (preRewrite === null) {
      url = mapTarget(mapped, request, target, 'not-found')
    } else {
      mapped = preRewrite(request.url, request.params, registration.prefix)
      url = mapTarget(mapped, request, target, 'confined')
    }
  } catch (err) {
    // Ours (bad path, bad upstream URL) get their JSON answer; an exception thrown by a user's
    // `upstream` function goes to the app's error handler like any handler error.
    if (!isProxyError(err)) throw err
    answerError(reply, err)
    return reply
  }
  useCall(registration, request, reply, target, url, mapped)
  // @fastify/http-proxy's `handler(request, reply, dest, options)`: dest is the upstream path; the
  // origin travels in the options, for `reply.from(dest, options)` to reach the same upstream.
  if (handler !== null) return handler(request, reply, url.pathname, { ...registration.fromOptions, getUpstream: () => url.origin })
  try {
    reply.from(url.origin + url.pathname, registration.fromOptions)
  } catch (err) {
    // reply-from refuses some paths we allow (e.g. a segment starting with `..`, like `..foo`).
    if ((err as { statusCode?: number }).statusCode !== 400) throw err
    answerError(reply, new BadPathError('refused by the upstream client'))
  }
  return reply
}

/**
 * The request's call, aimed at `url`: started here, or, when a hook or the handler already
 * called `reply.fromParameters`, that same call with its mapping replaced (the latest mapping
 * is the one the response hooks use). Never a second call: it would add a second abort listener.
 */
export function useCall (registration: Registration, request: FastifyRequest, reply: FastifyReply,
  target: ProxyTarget, url: UpstreamTarget, mapped: string): void {
  const call = callOf(request)
  if (call === null) {
    setCall(request, startCall(registration, request, reply, target, url, mapped))
    return
  }
  // A send on its way keeps the mapping it was sent with: the send that would use this one is a
  // second send, which reply.from drops (one-send.ts).
  if (call.sending) return
  call.target = target
  call.url = url
  call.mapped = mapped
}

/**
 * A new call. Its signal aborts on the events `onRequestAbort` reports: when the client leaves
 * (before upstream headers, mid-upload, mid-stream) and, when the route has a deadline, when
 * that passes; the upstream handler then cancels the upstream request. A small body may come
 * whole (one Buffer) only to the proxy's own relay, not to a user's onResponse.
 */
export function startCall (registration: Registration, request: FastifyRequest, reply: FastifyReply,
  target: ProxyTarget, url: UpstreamTarget, mapped: string): UpstreamCall {
  const signal = new CallSignal()
  onRequestAbort(request, reply, signal)
  const wholeBody = registration.settings.replyOptions.onResponse === undefined
  const { budgetHeaders, pool } = registration
  return {
    request,
    signal,
    budgetHeaders,
    wholeBody,
    target,
    url,
    mapped,
    trailers: null,
    sentAt: 0,
    sending: false,
    warned: false,
    pool,
    replica: null,
    tried: null,
    heldBody: null,
    resume: callResume(registration.sseResume, registration.resumeDownloads, registration.remaining, IDEMPOTENT, request.method)
  }
}

/** The registration's reply-from options; each hook finds its request's call (upstream/call.ts). */
export function replyFromOptions (registration: Registration): FastifyReplyFromHooks {
  const { settings } = registration
  const { onResponse } = settings.replyOptions
  // reply-from's types are narrower than what it really passes: header values may be arrays or
  // numbers, and retryDelay's details are its own request options and the upstream response.
  // Requests and replies are this app's (its types say any server's).
  return {
    queryString: (_search, _url, request) => (callOf(request as FastifyRequest) as UpstreamCall).url.search.slice(1),
    ...settings.replyOptions,
    rewriteRequestHeaders: (request, headers) => requestHeaders(settings, request as FastifyRequest, headers as UpstreamRequestHeaders) as IncomingHttpHeaders,
    rewriteHeaders: (headers, request) => responseHeaders(registration, request as FastifyRequest, headers as OutgoingHttpHeaders) as IncomingHttpHeaders,
    onResponse: onResponse === undefined
      ? (request, reply, res) => relay(registration, request as FastifyRequest, reply as FastifyReply, res as unknown as UpstreamResponse)
      : (request, reply, res) => userResponse(settings, request, reply, res),
    onError: (reply, details) => onUpstreamError(settings, reply as FastifyReply, details),
    retryDelay: (details) => retryOf(registration, details as unknown as AttemptDetails)
  }
}

function requestHeaders (settings: ProxySettings, request: FastifyRequest, received: UpstreamRequestHeaders): UpstreamRequestHeaders {
  // `received` is reply-from's own copy for this request, ours to change.
  const headers = hasHopByHop(received) ? withoutHopByHop(received, true) : received
  stripRequestOnly(headers, request.body !== undefined)
  setForwardedHeaders(request, headers)
  const rewrite = settings.rewriteRequestHeaders
  const rewritten = rewrite === null ? headers : rewrite(request, headers)
  attachCall(rewritten, callOf(request) as UpstreamCall)
  return rewritten
}

/** The retry policy for one attempt; reply-from gives it its own request options, which carry the call. */
function retryOf (registration: Registration, details: AttemptDetails): number | null {
  const call = callOfHeaders(details.req.headers)
  if (call === undefined) return null
  const { retries, compat } = registration.settings
  return retryDelay(call, details, retries, registration.remaining, compat.retryMethods)
}

function responseHeaders (registration: Registration, request: FastifyRequest, headers: OutgoingHttpHeaders): OutgoingHttpHeaders {
  const { settings } = registration
  const call = callOf(request) as UpstreamCall
  // A copy: the upstream's own `Trailer` header is still needed when relaying the body.
  const clean = withoutHopByHop(headers, false)
  if (settings.serverTiming) addServerTiming(clean, call, request, registration.withDeadline)
  if (settings.compat.rewriteLocation && (clean.location !== undefined || clean['content-location'] !== undefined)) {
    rewriteLocations(clean, call.mapped, call.target.prefix.length, call.url)
  }
  const rewrite = settings.rewriteHeaders
  return rewrite === null ? clean : rewrite(clean, request)
}

/** The proxy's own relay; a gRPC request's response is looked at first (response/grpc-relay.ts). */
function relay (registration: Registration, request: FastifyRequest, reply: FastifyReply, res: UpstreamResponse): void {
  const call = callOf(request) as UpstreamCall
  if (!answerGrpc(call, request, reply, res, registration.grpcDrain)) relayResponse(call, request, reply, res, registration)
}

type OnResponseArgs = Parameters<NonNullable<FastifyReplyFromHooks['onResponse']>>

/**
 * A user's replyOptions.onResponse gets the upstream response instead of the proxy's relay: the
 * upstream call keeps its signal and timers, but the head is not flushed early, event streams are
 * not ended at an event boundary by a drain, trailers are dropped, and a body that fails mid-way is
 * handled by whatever the hook sends (README: Switching from @fastify/http-proxy).
 */
function userResponse (settings: ProxySettings, ...[request, reply, res]: OnResponseArgs): void {
  const call = callOf(request as FastifyRequest) as UpstreamCall
  reportResponse(call, request as FastifyRequest, reply as FastifyReply, (res as unknown as UpstreamResponse).statusCode)
  settings.replyOptions.onResponse?.(request, reply, res)
}

function onUpstreamError (settings: ProxySettings, reply: FastifyReply, details: { error: Error }): void {
  const reason = callOf(reply.request)?.signal.reason as { code?: string } | undefined
  if (reason?.code === 'FST_STREAMLINE_CLIENT_DISCONNECTED') {
    reply.log.info('client disconnected; upstream request aborted')
    return
  }
  // The rest of a request body the upstream stopped reading is read by nobody: kept alive, the
  // connection would hang the uploading client. Close it after the answer, as the deadline does.
  if (!reply.request.raw.complete) reply.raw.shouldKeepAlive = false
  // A user's replyOptions.onError answers instead of the proxy's 502/504.
  const { onError } = settings.replyOptions
  if (onError !== undefined) {
    onError(reply, details)
    return
  }
  sendUpstreamError(reply, details.error)
}
