import type { FastifyRequest } from 'fastify'
import type { ProxyTarget, UpstreamTarget } from '../target.js'
import type { CallSignal } from './call-signal.js'
import type { UpstreamPool } from './pool.js'
import type { Replica } from './replica.js'
import type { CallResume } from './sse-resume-options.js'

// One proxied request's upstream call, and where it is kept: in ONE slot on the Fastify request
// (the registration's reply-from hooks, `reply.fromParameters` and the route's handler all find
// it there). reply-from builds undici's request options itself and hands our dispatcher nothing
// else, so the call also rides on the upstream headers object under a symbol key: reply-from
// copies the headers for each attempt (retries included) with Object.assign, which copies own
// symbol keys too, and undici reads only string keys. An AsyncLocalStorage would also work,
// but on Node 20 it turns on async hooks for the whole process, which costs every proxied
// request measurable CPU.

/** Headers stamped on each attempt when it is sent: the remaining deadline budget. */
export type BudgetHeaders = (request: FastifyRequest) => Record<string, string>

/** One proxied request: where it goes, and what the dispatcher needs to send it. */
export interface UpstreamCall {
  readonly request: FastifyRequest
  readonly signal: CallSignal
  /** Shared by the registration's calls (a function of the request, not a closure per call). */
  readonly budgetHeaders: BudgetHeaders
  /**
   * Whether a small body may be handed over as one Buffer (the proxy's own relay takes one);
   * cleared for a `reply.from` made with other options (one-send.ts), whose hooks expect a stream.
   */
  wholeBody: boolean
  /** The mapping in use: the registration's, or one `reply.fromParameters` compiled for its prefix. */
  target: ProxyTarget
  /** The upstream URL, in pieces. */
  url: UpstreamTarget
  /** The request URL the upstream URL was mapped from (the raw URL, or a preRewrite result). */
  mapped: string
  /** The upstream's trailers, set when the body ends. */
  trailers: Record<string, string | string[] | undefined> | null
  /** When the latest attempt was sent upstream (performance.now()), for head latency. */
  sentAt: number
  /**
   * An attempt is on its way: set when the dispatcher sends it, cleared when the upstream handler
   * hands its head or its failure back to reply-from. A `reply.from` meanwhile is a second send.
   */
  sending: boolean
  /** The request's second send was logged (one warning per request). */
  warned: boolean
  /** The registration's pool, when its upstream is several replicas. */
  readonly pool: UpstreamPool | null
  /** The replica of the latest attempt (pools only). */
  replica: Replica | null
  /** The replicas of the attempts before it, once there was a retry (pools only). */
  tried: Replica[] | null
  /** A small request body read whole, so that a failover can send it again (pools only). */
  heldBody: Buffer | null
  /** `sseResume` for this call (an idempotent method); null when off. */
  readonly resume: CallResume | null
}

/** The request's slot; each proxy context decorates it (null) so that request objects keep one shape. */
export const kCall = Symbol('fastify-streamline.upstream-call')

interface WithCall {
  [kCall]?: UpstreamCall | null
}

/** The request's call, once started (by the route's handler, or a hook's `reply.fromParameters`). */
export function callOf (request: FastifyRequest): UpstreamCall | null {
  return (request as unknown as WithCall)[kCall] ?? null
}

/** Keeps `call` in its request's slot. */
export function setCall (request: FastifyRequest, call: UpstreamCall): void {
  (request as unknown as WithCall)[kCall] = call
}

/** The call upstream `headers` belong to (see attachCall), if any. */
export function callOfHeaders (headers: object): UpstreamCall | undefined {
  return (headers as WithCall)[kCall] ?? undefined
}

/** Marks upstream headers as belonging to `call`, for the dispatcher and the retry policy to find. */
export function attachCall (headers: object, call: UpstreamCall): void {
  (headers as WithCall)[kCall] = call
}
