/** The phase a deadline expired in. */
export type DeadlinePhase = 'response' | 'idle' | 'lifetime'

/** Options of `app.register(deadline, options)`; every time is in milliseconds. */
export interface DeadlineOptions {
  /** From arrival until the response headers are sent. Default 30000. */
  timeout?: number
  /** Once headers are sent, the longest gap between two writes of the body. Default 60000; 0 turns it off. */
  streamIdleTimeout?: number
  /** The longest a response may take in total, body included. Default 0 (unlimited). */
  maxStreamDuration?: number
  /** Status sent when the deadline expires before the response headers. Default 504. */
  statusCode?: number
  /** Let an incoming budget header shorten (never lengthen) the deadline. Default false. */
  trustIncoming?: boolean | ((request: import('fastify').FastifyRequest) => boolean)
  /** Header that carries the remaining budget upstream and is read when trusted. Default `x-request-timeout-ms`. */
  propagationHeader?: string
}

/** Per-route overrides, under `config.deadline`. */
export interface RouteDeadlineOptions {
  timeout?: number
  streamIdleTimeout?: number
  maxStreamDuration?: number
  /** Streaming mode from arrival: `timeout` does not apply; something must be written every `streamIdleTimeout`. */
  streaming?: boolean
}

/**
 * A route's `config.deadline`: `false` opts the route out; an object overrides the plugin's
 * options for it. `true` is not a value: a route without `config.deadline` already gets the
 * plugin's options.
 */
// `& object`: Fastify intersects the route's config with the literal type it infers from the
// route (`{ deadline: true }`), and an all-optional interface intersected with `true` accepts
// `true`; `object & true` is `never`, so the mistake is a type error there too.
export type RouteDeadlineConfig = false | (RouteDeadlineOptions & object)

/** What a handler sees as `request.deadline`. */
export interface RequestDeadline {
  /** Aborts on expiry (reason: DeadlineExceededError) or client disconnect (reason: ClientDisconnectedError). */
  readonly signal: AbortSignal
  /** Epoch ms by which the response must have started; Infinity when no such limit applies. */
  readonly expiresAt: number
  /** Milliseconds left until `expiresAt`, never negative. */
  remaining (): number
  /** True for a streaming-mode route, and once the response has gone out as a stream. */
  readonly streaming: boolean
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Present on every request once the deadline plugin is registered; an unlimited one on opted-out routes. */
    deadline: RequestDeadline
  }
  interface FastifyContextConfig {
    /** `false` opts the route out; an object overrides the plugin's options for it. */
    deadline?: RouteDeadlineConfig
  }
}

/** Everything one route's requests need, resolved once when the route is added. */
export interface DeadlineSettings {
  timeout: number
  streamIdleTimeout: number
  maxStreamDuration: number
  streaming: boolean
  statusCode: number
  trustIncoming: ((request: import('fastify').FastifyRequest) => boolean) | null
  propagationHeader: string
}
