import type { FastifyRequest } from 'fastify'
import type { DeadlineSettings } from './types.js'

// grpc-timeout: at most 8 digits and a unit (gRPC over HTTP/2 spec).
const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/
const GRPC_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 }
const MILLISECONDS = /^\d{1,12}$/

/** The budget an upstream caller granted this request, in ms, or undefined when absent, untrusted or malformed. */
export function incomingBudget (request: FastifyRequest, settings: DeadlineSettings): number | undefined {
  if (settings.trustIncoming === null || !settings.trustIncoming(request)) return undefined
  const relative = request.headers[settings.propagationHeader]
  if (typeof relative === 'string' && MILLISECONDS.test(relative)) return Number(relative)
  const grpc = request.headers['grpc-timeout']
  if (typeof grpc !== 'string') return undefined
  const match = GRPC_TIMEOUT.exec(grpc)
  return match === null ? undefined : Math.floor(Number(match[1]) * GRPC_UNIT_MS[match[2]])
}

/** Headers that tell the next hop how much of the budget is left. */
export function budgetHeaders (remaining: number, request: FastifyRequest, settings: DeadlineSettings): Record<string, string> {
  if (remaining === Infinity) return {}
  const ms = Math.floor(remaining)
  if (isGrpc(request.headers['content-type'])) return { 'grpc-timeout': grpcTimeout(ms) }
  return { [settings.propagationHeader]: String(ms) }
}

function isGrpc (contentType: string | undefined): boolean {
  return contentType !== undefined && contentType.toLowerCase().startsWith('application/grpc')
}

function grpcTimeout (ms: number): string {
  return ms <= 99_999_999 ? `${ms}m` : `${Math.min(Math.ceil(ms / 1000), 99_999_999)}S`
}
