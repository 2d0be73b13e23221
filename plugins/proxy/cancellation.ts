import type { FastifyReply, FastifyRequest } from 'fastify'
import { requestSignal } from '../deadline/index.js'
import type { UpstreamCall } from './dispatcher.js'

/** A proxied request: what the dispatcher needs to send it upstream. */
export type ProxyCall = UpstreamCall

export type BudgetHeaders = (request: FastifyRequest) => Record<string, string>

/**
 * Creates the call for one request. Its signal is `requestSignal`'s: it aborts when the client
 * leaves (before upstream headers, mid-upload, mid-stream) and, when the route has a deadline,
 * when that passes; undici then cancels the upstream request.
 */
export function startCall (request: FastifyRequest, reply: FastifyReply, budget: BudgetHeaders): ProxyCall {
  return { signal: requestSignal(request, reply), budget: () => budget(request), trailers: null }
}
