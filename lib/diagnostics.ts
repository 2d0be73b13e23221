import diagnostics from 'node:diagnostics_channel'
import type { FastifyReply, FastifyRequest } from 'fastify'

// The plugins' public events, on node:diagnostics_channel (named like undici's). Each is
// published only when a channel has subscribers: the message is never built otherwise.

/** `fastify-streamline:deadline:expired`: a deadline passed and the plugin answered. */
export interface DeadlineExpiredMessage {
  request: FastifyRequest
  reply: FastifyReply
  /** The route's URL pattern, e.g. `/live/*`. */
  route: string
  phase: 'response' | 'idle' | 'lifetime'
  /** ms from arrival to expiry. */
  elapsed: number
  /**
   * What the client saw: a 504 before headers, a clean end of an event stream (or of a gRPC
   * stream, with its status in trailers), or a cut. A gRPC request's answer before headers is
   * still `'504'`: its `grpcStatus` says what the client got.
   */
  outcome: '504' | 'clean-end' | 'cut'
  /** The gRPC status the client got (4, DEADLINE_EXCEEDED), when the request spoke gRPC and the answer had one. */
  grpcStatus?: number
}

/** `fastify-streamline:deadline:client-disconnected`: the client left before its response was complete. */
export interface ClientDisconnectedMessage {
  request: FastifyRequest
  /** `response` before the headers went out, `stream` after. */
  phase: 'response' | 'stream'
  elapsed: number
}

/** `fastify-streamline:proxy:upstream-error`: an upstream call failed; what the client got. */
export interface UpstreamErrorMessage {
  request: FastifyRequest
  error: Error
  /** The stable code of the answer, e.g. `FST_STREAMLINE_UPSTREAM_UNAVAILABLE`. */
  code: string
  /** The status the client got: the error's, or the one already sent when the body was cut. */
  statusCode: number
  /** The gRPC status the client got (HTTP 200 then), when the request spoke gRPC and was answered rather than cut. */
  grpcStatus?: number
}

/** `fastify-streamline:proxy:response`: the upstream's response head arrived. */
export interface ProxyResponseMessage {
  request: FastifyRequest
  statusCode: number
  /** ms from sending the request upstream (this attempt) to its response head. */
  upstreamHeadersMs: number
  /** The origin that answered: the upstream, or the pool's replica (its address). */
  upstream: string
}

/** Who ended a proxied body or a tunnel. */
export type StreamEndCause = 'upstream' | 'client' | 'idle' | 'lifetime' | 'drain'

/** `fastify-streamline:stream:end`: a proxied response body ended, however it ended. */
export interface StreamEndMessage {
  request: FastifyRequest
  /** Body bytes relayed to the client (an event stream's heartbeats included). */
  bytes: number
  /** ms from the upstream's head to the end. */
  durationMs: number
  endedBy: StreamEndCause
  /** The origin that served the body: the upstream, or the pool's replica. */
  upstream: string
  /** How many times the ingress resumed the body after a cut (`sseResume`, `resumeDownloads`); 0 without. */
  resumes: number
  /** A gRPC response's status: ours (a deadline's 4, a drain's 14, a mapped upstream error), else the upstream's as relayed; absent when none was seen. */
  grpcStatus?: number
}

/** Where a resumed body went on from: an event stream's last relayed id, or a download's byte offset. */
export type ResumedFrom =
  | {
    kind: 'event-stream'
    /** The `Last-Event-ID` the resume request was sent. */
    lastEventId: string
  }
  | {
    kind: 'download'
    /** Bytes already relayed: the resume request asked for `Range: bytes=<offset>-`. */
    offset: number
  }

/** `fastify-streamline:stream:resumed`: a cut body continues from a new upstream response (`sseResume`, `resumeDownloads`). */
export type StreamResumedMessage = ResumedFrom & {
  request: FastifyRequest
  /** The resume request that answered, 1 for the first of this gap. */
  attempt: number
  /** ms from the cut to the new response's head. */
  gapMs: number
  /** The origin that answered: the upstream, or the pool's replica. */
  upstream: string
}

/** `fastify-streamline:tunnel:opened`: a WebSocket tunnel opened (the upstream's 101 went to the client). */
export interface TunnelOpenedMessage {
  request: FastifyRequest
  /** The subprotocol the upstream chose, or ''. */
  protocol: string
}

/** `fastify-streamline:tunnel:closed`: a WebSocket tunnel closed. */
export interface TunnelClosedMessage {
  request: FastifyRequest
  closedBy: 'client' | 'upstream' | 'idle' | 'lifetime' | 'shutdown'
  /** Bytes written to the upstream and to the client, handshakes included. */
  bytesIn: number
  bytesOut: number
  durationMs: number
  /** The origin the tunnel ran to: the upstream, or the pool's replica. */
  upstream: string
}

/** `fastify-streamline:upstream:ejected`: passive health took a pool's replica out of rotation. */
export interface UpstreamEjectedMessage {
  /** The replica's origin (its address). */
  upstream: string
  reason: 'consecutive-failures'
  /** Failures in a row that ejected it. */
  failures: number
  /** When it comes back (ms since the epoch). */
  until: number
}

/** `fastify-streamline:upstream:restored`: an ejected replica is back in rotation. */
export interface UpstreamRestoredMessage {
  upstream: string
}

/** `fastify-streamline:upstream:health`: an active health check changed a replica's state. */
export interface UpstreamHealthMessage {
  upstream: string
  healthy: boolean
}

/** `fastify-streamline:upstream:set`: a pool's replica set changed (resolve). */
export interface UpstreamSetMessage {
  /** The replicas' origins now. */
  upstreams: string[]
}

export const CHANNELS = {
  deadlineExpired: 'fastify-streamline:deadline:expired',
  clientDisconnected: 'fastify-streamline:deadline:client-disconnected',
  upstreamError: 'fastify-streamline:proxy:upstream-error',
  proxyResponse: 'fastify-streamline:proxy:response',
  streamEnd: 'fastify-streamline:stream:end',
  streamResumed: 'fastify-streamline:stream:resumed',
  tunnelOpened: 'fastify-streamline:tunnel:opened',
  tunnelClosed: 'fastify-streamline:tunnel:closed',
  upstreamEjected: 'fastify-streamline:upstream:ejected',
  upstreamRestored: 'fastify-streamline:upstream:restored',
  upstreamHealth: 'fastify-streamline:upstream:health',
  upstreamSet: 'fastify-streamline:upstream:set'
} as const

// The publishers' side (`hasSubscribers`, `publish`), one per channel, for the plugins.
export const deadlineExpired = diagnostics.channel(CHANNELS.deadlineExpired)
export const clientDisconnected = diagnostics.channel(CHANNELS.clientDisconnected)
export const upstreamError = diagnostics.channel(CHANNELS.upstreamError)
export const proxyResponse = diagnostics.channel(CHANNELS.proxyResponse)
export const streamEnd = diagnostics.channel(CHANNELS.streamEnd)
export const streamResumed = diagnostics.channel(CHANNELS.streamResumed)
export const tunnelOpened = diagnostics.channel(CHANNELS.tunnelOpened)
export const tunnelClosed = diagnostics.channel(CHANNELS.tunnelClosed)
export const upstreamEjected = diagnostics.channel(CHANNELS.upstreamEjected)
export const upstreamRestored = diagnostics.channel(CHANNELS.upstreamRestored)
export const upstreamHealth = diagnostics.channel(CHANNELS.upstreamHealth)
export const upstreamSet = diagnostics.channel(CHANNELS.upstreamSet)

/** A channel's subscribers' side, typed with its message (node:diagnostics_channel's own is `unknown`). */
export interface TypedChannel<Message> {
  readonly name: string
  /**
   * Calls `onMessage` with every message published from now on (held strongly, as
   * `diagnostics.subscribe` does). A callback that throws is logged on the message's request
   * (`error`), and the request goes on: Node would rethrow it on the next tick and end the process.
   */
  subscribe: (onMessage: (message: Message) => void) => void
  /** Whether `onMessage` was subscribed. */
  unsubscribe: (onMessage: (message: Message) => void) => boolean
}

type Subscriber = (message: unknown) => void

function typed<Message> (name: string): TypedChannel<Message> {
  // The guarded wrapper of each callback, so that unsubscribe finds it.
  const guarded = new WeakMap<object, Subscriber>()
  return {
    name,
    subscribe (onMessage) {
      const subscriber = guarded.get(onMessage) ?? guard(name, onMessage as Subscriber)
      guarded.set(onMessage, subscriber)
      diagnostics.subscribe(name, subscriber)
    },
    unsubscribe (onMessage) {
      const subscriber = guarded.get(onMessage)
      return subscriber !== undefined && diagnostics.unsubscribe(name, subscriber)
    }
  }
}

function guard (channel: string, onMessage: Subscriber): Subscriber {
  return function guardedSubscriber (message) {
    try {
      onMessage(message)
    } catch (err) {
      (message as { request?: FastifyRequest }).request?.log.error({ err, channel }, 'a diagnostics subscriber threw; the request goes on')
    }
  }
}

/**
 * The channels, typed: `channels.streamEnd.subscribe(({ endedBy, bytes }) => ...)` compiles under
 * `strict` without a cast. The same channels as `CHANNELS` names for `diagnostics.subscribe`.
 */
export const channels = {
  deadlineExpired: typed<DeadlineExpiredMessage>(CHANNELS.deadlineExpired),
  clientDisconnected: typed<ClientDisconnectedMessage>(CHANNELS.clientDisconnected),
  upstreamError: typed<UpstreamErrorMessage>(CHANNELS.upstreamError),
  proxyResponse: typed<ProxyResponseMessage>(CHANNELS.proxyResponse),
  streamEnd: typed<StreamEndMessage>(CHANNELS.streamEnd),
  streamResumed: typed<StreamResumedMessage>(CHANNELS.streamResumed),
  tunnelOpened: typed<TunnelOpenedMessage>(CHANNELS.tunnelOpened),
  tunnelClosed: typed<TunnelClosedMessage>(CHANNELS.tunnelClosed),
  upstreamEjected: typed<UpstreamEjectedMessage>(CHANNELS.upstreamEjected),
  upstreamRestored: typed<UpstreamRestoredMessage>(CHANNELS.upstreamRestored),
  upstreamHealth: typed<UpstreamHealthMessage>(CHANNELS.upstreamHealth),
  upstreamSet: typed<UpstreamSetMessage>(CHANNELS.upstreamSet)
} as const
