import type { FastifyReply, FastifyRequest } from 'fastify'
import { ClientDisconnectedError } from '../deadline/index.js'
import type { UpstreamCall } from './dispatcher.js'

/** A proxied request: what the dispatcher needs, plus whether the upstream body is being relayed. */
export interface ProxyCall extends UpstreamCall {
  /** Set once the upstream's head arrived and its body is handed to Fastify. */
  relaying: boolean
}

export type BudgetHeaders = (request: FastifyRequest) => Record<string, string>

// The upstream request is aborted when the client leaves (before upstream headers, mid-upload,
// mid-stream) and, with the deadline plugin, when `request.deadline.signal` aborts. We own the
// controller instead of passing the deadline's signal straight to undici because a route may opt
// out of the deadline (its signal then never aborts) and a disconnect must still stop the upstream.

/** Creates the call for one request; its signal aborts on client disconnect or deadline expiry. */
export function startCall (request: FastifyRequest, reply: FastifyReply, budget: BudgetHeaders, withDeadline: boolean): ProxyCall {
  const controller = new AbortController()
  const res = reply.raw
  const call: ProxyCall = { signal: controller.signal, budget: () => budget(request), trailers: null, relaying: false }
  // A deadline that can never pass (opted-out route: one shared signal for all of them) is not
  // listened to; after headers the deadline acts on the response, which `close` below sees.
  const deadline = withDeadline && request.deadline.expiresAt !== Infinity ? request.deadline.signal : null

  const onDeadline = (): void => {
    // When the deadline has ended a relayed response cleanly (SSE), Fastify destroys the
    // upstream body itself once that end is flushed; aborting now would make it destroy the
    // client socket first and could lose the final bytes.
    if (call.relaying && res.writableEnded) return
    controller.abort((deadline as AbortSignal).reason)
  }
  const onClose = (): void => {
    deadline?.removeEventListener('abort', onDeadline)
    if (!res.writableFinished) controller.abort(new ClientDisconnectedError())
  }

  if (deadline !== null) {
    if (deadline.aborted) onDeadline()
    else deadline.addEventListener('abort', onDeadline, { once: true })
  }
  res.once('close', onClose)
  return call
}
