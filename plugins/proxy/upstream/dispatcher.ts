import { Agent, errors, type Dispatcher } from 'undici'
import type { Readable } from 'node:stream'
import type { ProxyTlsOptions } from '../types.js'
import { callOfHeaders, type UpstreamCall } from './call.js'
import { UpstreamHandler, type AttemptTimeouts, type UpstreamCallback } from './handler.js'
import { ConnectGates } from './connect-gate.js'
import { upstreamConnector } from './connector.js'
import { cancelsOften } from './cancelled-streams.js'
import { aimAtReplica, holdBody, shouldHoldBody } from './replica-attempt.js'
import { http2AgentOptions } from './http2.js'

// @fastify/reply-from takes no AbortSignal and builds undici's request options itself. It
// does accept, as its `undici` option, any object with a `request(options, callback)`
// method. This file is that object: a thin wrapper around an undici Agent that adds, to
// every request reply-from sends, the signal and timers of the Fastify request it serves,
// which it finds on the headers (call.ts). Each attempt goes out through undici's dispatch()
// with our handler (handler.ts). Aborting the call's signal makes the handler cancel the
// upstream request (before headers) or destroy the body stream (after): the upstream sees its
// socket close.

/** What the agent is built from: the registration's transport settings, resolved. */
export interface AgentSettings {
  /** Max connections per upstream origin; null: no cap. */
  connections: number | null
  keepAliveTimeout: number
  /** The operator's; undefined: undici's default (connector.ts). */
  connectTimeout: number | undefined
  /** HTTP/2 to the upstream (http2.ts). */
  http2: boolean
  tls: ProxyTlsOptions
  /** Further undici Agent options (@fastify/http-proxy's `undici`). */
  agentOptions: Record<string, unknown>
  /** A Dispatcher the user gave instead: used as it is, never destroyed by the proxy. */
  given: Dispatcher | null
}

/** What reply-from's `undici` option receives, plus `destroy` for the plugin's onClose. */
export interface ProxyDispatcher {
  request: (options: Dispatcher.RequestOptions, callback: UpstreamCallback) => void
  destroy: () => Promise<void>
  /** The undici Agent (or the Dispatcher given) under it, for a pool's health checks. */
  agent: Dispatcher
}

export interface TransportTimers {
  headersTimeout: number
  bodyTimeout: number
}

/** `timers`: undici's own (our fallbacks, where a second's slack does not matter); `timeouts`: the operator's, kept to the millisecond. */
export function createDispatcher (settings: AgentSettings, timers: TransportTimers, timeouts: AttemptTimeouts): ProxyDispatcher {
  // A Dispatcher given as `undici` (@fastify/http-proxy's option) is used as it is and left to its
  // owner on close; the signal and timers below are per request, so they apply to it too.
  const { given } = settings
  // The connects in flight per origin are bounded (connect-gate.ts); a given Dispatcher connects its own way.
  const ownGates = new ConnectGates()
  const gates = given === null ? ownGates : null
  const h2 = http2AgentOptions(settings.http2)
  const agent = given ?? new Agent({
    // No cap by default: HTTP/1.1 carries one request per connection, so a cap of N lets N
    // long-lived streams (SSE) make every other request wait for a free connection forever.
    connections: settings.connections,
    pipelining: 1,
    // The rest of an `undici` option (its connections, timeouts and TLS are ours by now).
    ...settings.agentOptions,
    ...h2,
    keepAliveTimeout: settings.keepAliveTimeout,
    headersTimeout: timers.headersTimeout,
    bodyTimeout: timers.bodyTimeout,
    // The connector is built with the options it reads (allowH2: ALPN offers h2 over https://).
    connect: upstreamConnector({ ...settings, agentOptions: { ...settings.agentOptions, ...h2 } }, ownGates)
  })

  return {
    request (options, callback) {
      const headers = options.headers as Record<string, string>
      const call = callOfHeaders(headers)
      // Every `reply.from` on the proxy's routes carries a call, its own options or not (one-send.ts
      // ties them); one that does not would be sent as it is, without a signal, under the agent's timers.
      if (call === undefined) {
        agent.request(options, callback as (err: Error | null, data: Dispatcher.ResponseData) => void)
        return
      }
      // In place rather than a spread copy: reply-from builds these options afresh for each
      // attempt and never reads them again, and the copy was the wrapper's main cost.
      const sent = options as Dispatcher.DispatchOptions & TransportTimers
      sent.headersTimeout = timers.headersTimeout
      sent.bodyTimeout = timers.bodyTimeout
      const handler = new UpstreamHandler(call, callback, options.method, options.body, timeouts)
      // What a resume sends again (resume-gap.ts): the latest attempt, and where.
      if (call.resume !== null) {
        call.resume.agent = agent
        call.resume.options = sent
      }
      if (call.pool === null) send(agent, gates, call, sent, handler)
      else sendToReplica(agent, gates, call, sent, handler)
    },
    destroy: async () => {
      if (given !== null) return
      gates?.fail(new errors.ClientDestroyedError())
      await agent.destroy()
    },
    agent
  }
}

/** Sends one attempt of a pool's call to the replica chosen for it (replica-attempt.ts). */
function sendToReplica (agent: Dispatcher, gates: ConnectGates | null, call: UpstreamCall, options: Dispatcher.DispatchOptions, handler: UpstreamHandler): void {
  if (shouldHoldBody(call, options)) {
    holdBody(call, options.body as Readable).then(() => sendToReplica(agent, gates, call, options, handler), (err: Error) => handler.onError(err))
    return
  }
  if (call.signal.aborted) {
    handler.onError(call.signal.reason as Error)
    return
  }
  const replica = aimAtReplica(call, options)
  if (replica instanceof Error) {
    handler.onError(replica)
    return
  }
  handler.replica = replica
  send(agent, gates, call, options, handler)
}

/** Sends one attempt: one turn later for an HTTP/2 session that cancels many (cancelled-streams.ts). */
function send (agent: Dispatcher, gates: ConnectGates | null, call: UpstreamCall, options: Dispatcher.DispatchOptions, handler: UpstreamHandler): void {
  if (cancelsOften(handler.session)) setImmediate(sendNow, agent, gates, call, options, handler)
  else sendNow(agent, gates, call, options, handler)
}

/** Sends one attempt, unless its call was aborted first (the client left, the deadline passed). */
function sendNow (agent: Dispatcher, gates: ConnectGates | null, call: UpstreamCall, options: Dispatcher.DispatchOptions, handler: UpstreamHandler): void {
  if (call.signal.aborted) {
    handler.onError(call.signal.reason as Error)
    return
  }
  Object.assign(options.headers as Record<string, string>, call.budgetHeaders(call.request))
  call.sending = true
  call.sentAt = performance.now()
  if (gates === null) agent.dispatch(options, handler)
  else gates.dispatch(agent, options, handler, call.signal)
}
