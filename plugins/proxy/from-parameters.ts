import type { FastifyReply, FastifyRequest } from 'fastify'
import { compileTarget, type ProxyTarget, type UpstreamOption } from './target.js'
import type { BudgetHeaders, ProxyCall } from './cancellation.js'
import { startCall } from './cancellation.js'

// `reply.fromParameters(url, params, prefix)` from @fastify/http-proxy: the upstream URL and
// reply-from options the proxy would use for `url`. The URL goes through the same mapping and
// path checks as the proxy's routes (target.ts); the options carry the proxy's wiring, so a
// `reply.from(url, options)` made with them is cancelled, timed and logged like a proxied request.

const kCall = Symbol('fastify-streamline.proxy-call')

interface WithCall {
  [kCall]?: ProxyCall
}

/**
 * The request's call, started once: a preHandler may call `fromParameters` several times and
 * the route's handler may still run after it; each start would add abort listeners.
 */
export function callOf (request: FastifyRequest, reply: FastifyReply, budget: BudgetHeaders, wholeBody: boolean): ProxyCall {
  const holder = request as unknown as WithCall
  holder[kCall] ??= startCall(request, reply, budget, wholeBody)
  return holder[kCall]
}

/** The call `fromParameters` started for this request, if any (read by the route's handler). */
export function startedCall (request: FastifyRequest): ProxyCall | undefined {
  return (request as unknown as WithCall)[kCall]
}

/**
 * The mapping for a `prefix` given to `fromParameters`: the registration's own when it is the
 * same, else compiled for this call (it is only a few segments). `:params` of `rewritePrefix`
 * that the given prefix does not have take their value from `params`, as in @fastify/http-proxy;
 * compileTarget then refuses a value that is not one safe segment.
 */
export function targetFor (own: ProxyTarget, ownPrefix: string, upstream: UpstreamOption, rewritePrefix: string,
  prefix: string, params: Record<string, unknown>): ProxyTarget {
  if (prefix === ownPrefix) return own
  const normalized = prefix === '/' ? '' : prefix.replace(/\/+$/, '')
  const inPrefix = new Set(normalized.split('/').filter(p => p[0] === ':').map(p => p.slice(1)))
  const filled = rewritePrefix.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (whole, name: string) =>
    inPrefix.has(name) || params[name] === undefined ? whole : encodeURIComponent(String(params[name])))
  return compileTarget({ upstream, prefix: normalized, rewritePrefix: filled })
}
