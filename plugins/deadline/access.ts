import type { FastifyReply, FastifyRequest } from 'fastify'
import { ClientDisconnectedError } from './errors.js'
import { budgetHeaders } from './propagation.js'
import { closedByClient } from '../../lib/abrupt-end.js'
import type { ServerResponse } from 'node:http'
import type { ActiveDeadline } from './request-deadline.js'
import { joinListeners, tellAll, type AbortListener, type AbortListeners } from './listeners.js'

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
 * services shares one deadline. Empty when the route has no deadline (or, once the response
 * head is sent, no lifetime).
 */
export function deadlineHeaders (request: FastifyRequest): Record<string, string> {
  const deadline = activeDeadline(request)
  if (deadline === null) return {}
  return budgetHeaders(deadline.budgetLeft(), request, deadline.settings)
}

/** ms left for an upstream call of this request (ActiveDeadline.budgetLeft); Infinity without a deadline. */
export function budgetLeft (request: FastifyRequest): number {
  return activeDeadline(request)?.budgetLeft() ?? Infinity
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
 * Tells `listener` once when work done on behalf of this request should stop: the same events
 * as `requestSignal`, without allocating an AbortController (for the proxy's upstream calls).
 * `listener` is a function called with the reason, or an object whose `abort(reason)` is called
 * (a signal's owner, passed as it is: no closure per request). On a route with a deadline it
 * joins the deadline's own listeners and costs nothing more; otherwise one `close` listener.
 */
export function onRequestAbort (request: FastifyRequest, reply: FastifyReply, listener: AbortListener): void {
  const deadline = activeDeadline(request)
  if (deadline !== null) return deadline.onAbort(listener)
  const res = reply.raw as ListenedResponse
  const listeners = res[kAbortListeners]
  res[kAbortListeners] = joinListeners(listeners, listener)
  // `on`, not `once`: close fires once per response, and `once` costs a wrapper and a removal.
  if (listeners === undefined) res.on('close', tellClientLeft)
}

/** A response's abort listeners, for `tellClientLeft`: one listener shared by all responses, not a closure each. */
const kAbortListeners = Symbol('fastify-streamline.abort-listeners')

type ListenedResponse = ServerResponse & { [kAbortListeners]?: AbortListeners }

function tellClientLeft (this: ListenedResponse): void {
  const listeners = this[kAbortListeners]
  if (listeners !== undefined && closedByClient(this)) tellAll(listeners, new ClientDisconnectedError())
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
  onRequestAbort(request, reply, controller)
  return controller.signal
}
