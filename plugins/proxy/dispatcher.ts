import { AsyncLocalStorage } from 'node:async_hooks'
import { Agent, type Dispatcher } from 'undici'
import type { ProxySettings } from './options.js'

// @fastify/reply-from takes no AbortSignal and builds undici's request options itself. It
// does accept, as its `undici` option, any object with a `request(options, callback)`
// method. This file is that object: a thin wrapper around an undici Agent that adds, to
// every request reply-from sends, the signal and timers of the Fastify request it serves.
//
// How the wrapper finds that request: the proxy's route handler calls `reply.from()` inside
// `upstreamCalls.run(call, ...)`. reply-from calls `request()` synchronously from there, and
// its retries run from a setTimeout created in the same context, so AsyncLocalStorage hands
// every attempt the right `call`. Aborting the signal makes undici destroy the upstream
// request (before headers) or its body stream (after): the upstream sees its socket close.

/** One proxied request, as the dispatcher needs it. */
export interface UpstreamCall {
  readonly signal: AbortSignal
  /** Headers stamped on each attempt when it is sent (the remaining deadline budget). */
  readonly budget: () => Record<string, string>
  /** The upstream's trailers; undici fills the object when the body ends. */
  trailers: Record<string, string | string[] | undefined> | null
}

export const upstreamCalls = new AsyncLocalStorage<UpstreamCall>()

type Callback = (err: Error | null, data: Dispatcher.ResponseData) => void

/** What reply-from's `undici` option receives, plus `destroy` for the plugin's onClose. */
export interface ProxyDispatcher {
  request: (options: Dispatcher.RequestOptions, callback: Callback) => void
  destroy: () => Promise<void>
}

export interface TransportTimers {
  headersTimeout: number
  bodyTimeout: number
}

export function createDispatcher (settings: ProxySettings, timers: TransportTimers): ProxyDispatcher {
  const agent = new Agent({
    // No cap by default: HTTP/1.1 carries one request per connection, so a cap of N lets N
    // long-lived streams (SSE) make every other request wait for a free connection forever.
    connections: settings.connections,
    pipelining: 1,
    keepAliveTimeout: settings.keepAliveTimeout,
    headersTimeout: timers.headersTimeout,
    bodyTimeout: timers.bodyTimeout,
    connect: {
      timeout: settings.connectTimeout,
      rejectUnauthorized: settings.tls.rejectUnauthorized,
      ca: settings.tls.ca,
      servername: settings.tls.servername
    }
  })

  return {
    request (options, callback) {
      const call = upstreamCalls.getStore()
      if (call === undefined) throw new Error('proxy dispatcher used outside a proxied request')
      const headers = options.headers as Record<string, string>
      Object.assign(headers, call.budget())
      agent.request({ ...options, signal: call.signal, ...timers }, (err, data) => {
        if (err === null) call.trailers = data.trailers
        callback(err, data)
      })
    },
    destroy: () => agent.destroy()
  }
}
