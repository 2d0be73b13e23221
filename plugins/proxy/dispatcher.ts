import { Agent, type Dispatcher } from 'undici'
import type { FastifyRequest } from 'fastify'
import type { CallSignal } from './call-signal.js'
import type { ProxySettings } from './options.js'
import { UpstreamHandler, type UpstreamCallback } from './upstream-handler.js'

// @fastify/reply-from takes no AbortSignal and builds undici's request options itself. It
// does accept, as its `undici` option, any object with a `request(options, callback)`
// method. This file is that object: a thin wrapper around an undici Agent that adds, to
// every request reply-from sends, the signal and timers of the Fastify request it serves.
//
// How the wrapper finds that request: the route's rewriteRequestHeaders hook leaves the call
// on the headers object under a symbol key. reply-from copies the headers for each attempt
// (retries included) with Object.assign, which copies own symbol keys too, and undici reads
// only string keys. An AsyncLocalStorage would also work, but on Node 20 it turns on async
// hooks for the whole process, which cost every proxied request measurable CPU.
// Each attempt goes out through undici's dispatch() with our handler (upstream-handler.ts).
// Aborting the signal makes it cancel the upstream request (before headers) or destroy the body
// stream (after): the upstream sees its socket close.

/** One proxied request, as the dispatcher needs it. */
export interface UpstreamCall {
  readonly request: FastifyRequest
  readonly signal: CallSignal
  /** Headers stamped on each attempt when it is sent (the remaining deadline budget), shared by the registration's calls. */
  readonly budget: (request: FastifyRequest) => Record<string, string>
  /** The upstream's trailers, set when the body ends. */
  trailers: Record<string, string | string[] | undefined> | null
  /** Whether a small body may be handed over as one Buffer (the proxy's own relay takes one). */
  readonly wholeBody: boolean
  /** When the latest attempt was sent upstream (performance.now()), for head latency. */
  sentAt: number
}

const kUpstreamCall = Symbol('fastify-streamline.upstream-call')

interface WithCall {
  [kUpstreamCall]?: UpstreamCall
}

/** The call `headers` belong to (see attachCall), if any. */
export function callOfHeaders (headers: object): UpstreamCall | undefined {
  return (headers as WithCall)[kUpstreamCall]
}

/** Marks upstream headers as belonging to `call`, for the dispatcher to find. */
export function attachCall (headers: object, call: UpstreamCall): void {
  (headers as WithCall)[kUpstreamCall] = call
}

/** What reply-from's `undici` option receives, plus `destroy` for the plugin's onClose. */
export interface ProxyDispatcher {
  request: (options: Dispatcher.RequestOptions, callback: UpstreamCallback) => void
  destroy: () => Promise<void>
}

export interface TransportTimers {
  headersTimeout: number
  bodyTimeout: number
}

export function createDispatcher (settings: ProxySettings, timers: TransportTimers): ProxyDispatcher {
  // A Dispatcher given as `undici` (@fastify/http-proxy's option) is used as it is and left to its
  // owner on close; the signal and timers below are per request, so they apply to it too.
  const given = settings.compat.dispatcher
  const agent = given ?? new Agent({
    // No cap by default: HTTP/1.1 carries one request per connection, so a cap of N lets N
    // long-lived streams (SSE) make every other request wait for a free connection forever.
    connections: settings.connections,
    pipelining: 1,
    // The rest of an `undici` option (its connections, timeouts and TLS are ours by now).
    ...settings.compat.agent,
    keepAliveTimeout: settings.keepAliveTimeout,
    headersTimeout: timers.headersTimeout,
    bodyTimeout: timers.bodyTimeout,
    connect: {
      // Every TLS option given (an `undici.connect` may add cert, key...), verification on unless refused.
      ...settings.tls,
      timeout: settings.connectTimeout
    }
  })

  return {
    request (options, callback) {
      const headers = options.headers as Record<string, string> & WithCall
      const call = headers[kUpstreamCall]
      // A `reply.from(url)` the app's own hook made without the proxy's options (fromParameters
      // gives them): sent as it is, without a signal, under the agent's own timers.
      if (call === undefined) {
        agent.request(options, callback as (err: Error | null, data: Dispatcher.ResponseData) => void)
        return
      }
      Object.assign(headers, call.budget(call.request))
      call.sentAt = performance.now()
      // In place rather than a spread copy: reply-from builds these options afresh for each
      // attempt and never reads them again, and the copy was the wrapper's main cost.
      const sent = options as Dispatcher.DispatchOptions & TransportTimers
      sent.headersTimeout = timers.headersTimeout
      sent.bodyTimeout = timers.bodyTimeout
      agent.dispatch(sent, new UpstreamHandler(call, callback, options.method, options.body))
    },
    destroy: async () => { if (given === null) await agent.destroy() }
  }
}
