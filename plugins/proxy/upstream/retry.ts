import type { FastifyRequest } from 'fastify'
import type { UpstreamCall } from './call.js'
import type { UpstreamResponse } from './handler.js'
import { FAILOVER_STATUS, neverReachedUpstream } from '../upstream-errors.js'
import { IDEMPOTENT } from './replica-attempt.js'

// reply-from's own policy retries a GET 503 up to 10 times on its own timer, whatever the
// deadline says. This one is the only policy in use (reply-from calls it after every
// attempt). It retries only requests that are safe to repeat and that we can repeat:
// bodyless GET/HEAD/OPTIONS/TRACE (a streamed body is gone once sent), after a connection
// failure or a 503, and only while the remaining deadline outlasts the wait.

const REPEATABLE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])
const MAX_RETRY_AFTER = 10_000

/** What reply-from really passes to `retryDelay` (its types call `req`/`res` Fastify objects; they are not). */
export interface AttemptDetails {
  err?: Error | null
  req: { method: string, headers: object }
  res?: UpstreamResponse | null
  attempt: number
}

/**
 * The wait before the next attempt of `call`, or null for none. `methods`: the `retryMethods`
 * option (@fastify/http-proxy's); a request with a body is never retried. `remaining`: what is
 * left of the request's deadline.
 */
export function retryDelay (call: UpstreamCall, { err, req, res, attempt }: AttemptDetails, retries: number,
  remaining: (request: FastifyRequest) => number, methods: ReadonlySet<string> | null = null): number | null {
  if (call.pool !== null) return failoverDelay(call, { err, req, res, attempt }, remaining)
  if (attempt >= retries || call.signal.aborted) return null
  if (!(methods ?? REPEATABLE).has(req.method) || call.request.body !== undefined) return null
  let delay: number
  if (res !== undefined && res !== null) {
    if (res.statusCode !== 503) return null
    delay = retryAfter(res.headers['retry-after']) ?? backoff(attempt)
  } else if (err !== undefined && err !== null) {
    delay = backoff(attempt)
  } else {
    return null
  }
  if (delay > MAX_RETRY_AFTER || delay >= remaining(call.request)) return null
  // The 503 we drop still holds its upstream connection until its body is consumed.
  if (res !== undefined && res !== null && !Buffer.isBuffer(res.stream)) res.stream.destroy()
  return delay
}

/**
 * A pool's policy: an attempt that failed before any byte reached the client goes to another
 * replica (never one it tried, while any is left), within the deadline:
 * - any method, when the request never reached the replica (no connection, no TLS session);
 * - an idempotent method (RFC 9110), or any when the registration opts in, after a reset or a
 *   502/503/504, when its body can be sent again: none, or one held whole (replica-attempt.ts).
 * POST and PATCH are not sent twice by default (nginx's rule): the first may have been applied.
 */
function failoverDelay (call: UpstreamCall, { err, req, res, attempt }: AttemptDetails, remaining: (request: FastifyRequest) => number): number | null {
  const pool = call.pool as NonNullable<UpstreamCall['pool']>
  if (attempt >= pool.failover.retries || call.signal.aborted) return null
  const answered = res !== undefined && res !== null
  if (answered && !FAILOVER_STATUS.has(res.statusCode)) return null
  if (!answered && (err === undefined || err === null)) return null
  const neverSent = !answered && neverReachedUpstream(err as Error)
  if (!neverSent) {
    const repeatable = IDEMPOTENT.has(req.method) || pool.failover.nonIdempotent
    if (!repeatable || (call.request.body !== undefined && call.heldBody === null)) return null
  }
  const tried = call.tried === null ? [call.replica] : [...call.tried, call.replica]
  // Another replica at once; the same one again only after a backoff.
  const delay = pool.hasUntried(tried as NonNullable<UpstreamCall['replica']>[]) ? 1 : backoff(attempt)
  if (delay >= remaining(call.request)) return null
  if (answered && !Buffer.isBuffer(res.stream)) res.stream.destroy()
  return delay
}

/** 100 ms, 200 ms, 400 ms ... up to 2 s, with jitter; at least 1 (reply-from ignores 0). */
function backoff (attempt: number): number {
  return Math.max(1, Math.round(Math.min(100 * 2 ** attempt, 2000) * (0.5 + Math.random() / 2)))
}

/** Retry-After in ms (delta-seconds or an HTTP date), or undefined when absent or malformed. */
function retryAfter (value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined
  if (/^\d+$/.test(value)) return Math.max(1, Number(value) * 1000)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(1, date - Date.now())
}
