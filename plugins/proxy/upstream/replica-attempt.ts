import type { Dispatcher } from 'undici'
import type { Readable } from 'node:stream'
import type { UpstreamCall } from './call.js'
import type { Replica } from './replica.js'
import { NoReplicaError } from '../errors.js'

// One attempt of a call whose upstream is a pool: which replica takes it, and the options
// aimed at that replica. reply-from built the options for the pool's name (the first URL
// given); the replica's address replaces the origin, and its name the Host header, unless a
// `rewriteRequestHeaders` chose a Host of its own.

/** Methods RFC 9110 calls idempotent: sent again after a reset or a 502/503/504. */
export const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'])

/**
 * Aims `options` at the replica for this attempt (never one already tried, while any other is
 * in rotation) and counts it in flight. Returns it, or a NoReplicaError when the pool is empty.
 */
export function aimAtReplica (call: UpstreamCall, options: Dispatcher.DispatchOptions): Replica | Error {
  const pool = call.pool as NonNullable<UpstreamCall['pool']>
  // reply-from sends every attempt with the same headers object: the Host it named is the
  // pool's, or, on a retry, the previous replica's.
  const named = call.replica === null ? pool.name : call.replica.host
  if (call.replica !== null) call.tried = call.tried === null ? [call.replica] : [...call.tried, call.replica]
  const replica = pool.choose(call.request, call.tried)
  if (replica === null) return new NoReplicaError()
  call.replica = replica
  options.origin = replica.origin
  const headers = options.headers as Record<string, string>
  if (headers.host === named) headers.host = replica.host
  // Location headers from this replica name it by its Host: rewriteLocations compares with this.
  call.url.origin = replica.named
  if (call.heldBody !== null) options.body = call.heldBody
  pool.acquire(replica)
  return replica
}

/**
 * Whether this attempt's body should be read whole first, so that a failover can send it again:
 * a body of known length up to `retryBodyLimit`, on a method that may be retried after it was
 * sent, when the pool retries at all. A larger or unsized body streams, and is never replayed.
 */
export function shouldHoldBody (call: UpstreamCall, options: Dispatcher.DispatchOptions): boolean {
  const pool = call.pool
  if (pool === null || call.heldBody !== null || call.replica !== null || pool.failover.retries === 0) return false
  const body = options.body as Readable | null | undefined
  if (body === null || body === undefined || typeof body.pipe !== 'function') return false
  const length = Number((options.headers as Record<string, string>)['content-length'])
  return length > 0 && length <= pool.failover.bodyLimit && (IDEMPOTENT.has(options.method) || pool.failover.nonIdempotent)
}

/** Reads the request body whole (its length is known and small: shouldHoldBody). */
export async function holdBody (call: UpstreamCall, body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of body) chunks.push(chunk as Buffer)
  call.heldBody = Buffer.concat(chunks)
  return call.heldBody
}
