import type { FastifyReply, FastifyRequest } from 'fastify'
import { ClientDisconnectedError } from './errors.js'
import { budgetHeaders } from './propagation.js'
import { closedByClient } from '../../lib/http2-response.js'
import type { ActiveDeadline } from './request-deadline.js'

/** Where a request keeps its ActiveDeadline; private to this plugin. */
export const kDeadline = Symbol('fastify-streamline.deadline')

interface WithDeadline {
  [kDeadline]: ActiveDeadline | null
}

export function activeDeadline (request: FastifyRequest): ActiveDeadline | null {
  return (request as unknown as WithDeadline)[kDeadline] ?? null
}

export function setActiveDeadline (request: FastifyRequest, deadline: ActiveDeadline): void {
  (request as unknown as WithDeadline)[kDeadline] = deadline
}

/**
 * Headers that carry this request's remaining budget to the next hop, so a chain of
 * services shares one deadline. Empty when the route has no deadline.
 */
export function deadlineHeaders (request: FastifyRequest): Record<string, string> {
  const deadline = activeDeadline(request)
  if (deadline === null) return {}
  return budgetHeaders(deadline.remaining(), request, deadline.settings)
}

/**
 * Stops the request's deadline without aborting it: for a hijacked connection (a WebSocket
 * tunnel) whose handshake is done and which now governs its own lifetime.
 */
export function releaseDeadline (request: FastifyRequest): void {
  activeDeadline(request)?.stop()
}

/**
 * Writes `chunk` on the response as bytes that are not progress: the deadline's idle clock
 * (`streamIdleTimeout`) does not count them, so filler such as the proxy's SSE heartbeats
 * cannot keep alive a stream whose source went silent. A plain write when the route has no
 * deadline, or it is over.
 */
export function writeFiller (request: FastifyRequest, reply: FastifyReply, chunk: Buffer): boolean {
  const deadline = activeDeadline(request)
  if (deadline === null || deadline.phase === 'done') return reply.raw.write(chunk)
  return deadline.writeFiller(chunk)
}

/**
 * Calls `listener` once when work done on behalf of this request should stop: the same events
 * as `requestSignal`, without allocating an AbortController (for the proxy's upstream calls).
 */
export function onRequestAbort (request: FastifyRequest, reply: FastifyReply, listener: (reason: Error) => void): void {
  const deadline = activeDeadline(request)
  if (deadline !== null) return deadline.onAbort(listener)
  const res = reply.raw
  res.once('close', () => {
    if (closedByClient(res)) listener(new ClientDisconnectedError())
  })
}

/**
 * A signal for work done on behalf of this request: the deadline's own signal when the route
 * has one (expiry and disconnect), otherwise one that aborts only when the client leaves
 * before the response is complete (opted-out routes, or no deadline plugin registered).
 */
export function requestSignal (request: FastifyRequest, reply: FastifyReply): AbortSignal {
  const deadline = activeDeadline(request)
  if (deadline !== null) return deadline.signal
  const controller = new AbortController()
  onRequestAbort(request, reply, (reason) => controller.abort(reason))
  return controller.signal
}
