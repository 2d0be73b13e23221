import type { FastifyReply, FastifyRequest } from 'fastify'
// From the deadline plugin's helpers rather than its index: an internal variant of its public
// requestSignal that needs no AbortController.
import { onRequestAbort } from '../deadline/access.js'
import { CallSignal } from './call-signal.js'
import type { UpstreamCall } from './dispatcher.js'

/** A proxied request: what the dispatcher needs to send it upstream. */
export type ProxyCall = UpstreamCall

export type BudgetHeaders = (request: FastifyRequest) => Record<string, string>

/**
 * Creates the call for one request. Its signal aborts on the events `requestSignal` reports:
 * when the client leaves (before upstream headers, mid-upload, mid-stream) and, when the route
 * has a deadline, when that passes; the upstream handler then cancels the upstream request.
 * `wholeBody`: the response goes to the proxy's own relay, which takes a small body as a Buffer.
 */
export function startCall (request: FastifyRequest, reply: FastifyReply, budget: BudgetHeaders, wholeBody: boolean): ProxyCall {
  const signal = new CallSignal()
  onRequestAbort(request, reply, signal)
  return { request, signal, budget, trailers: null, sentAt: 0, wholeBody }
}
