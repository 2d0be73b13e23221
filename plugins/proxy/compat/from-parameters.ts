import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import type { FastifyReply } from 'fastify'
import { compileTarget, mapTarget, type ProxyTarget, type UpstreamOption } from '../target.js'
import { useCall, type Registration } from '../forward.js'

// `reply.fromParameters(url, params, prefix)` from @fastify/http-proxy: the upstream URL and
// reply-from options the proxy would use for `url`. The URL goes through the same mapping and
// path checks as the proxy's routes (target.ts); the options carry the proxy's wiring, so a
// `reply.from(url, options)` made with them is cancelled, timed and logged like a proxied request.

export interface FromParameters {
  url: string
  options: FastifyReplyFromHooks
}

/**
 * The decorator's work for one call. It aims the request's one upstream call (forward.ts
 * `useCall`) at `given`: a hook may call it several times, and the route's handler may still
 * run after it; the latest mapping is the one the response hooks use.
 */
export function fromParameters (registration: Registration, reply: FastifyReply, given: string,
  params: Record<string, unknown>, prefix: string): FromParameters {
  const { settings } = registration
  const target = targetFor(registration, prefix, params)
  const mapped = settings.compat.preRewrite === null ? given : settings.compat.preRewrite(given, params, prefix)
  const url = mapTarget(mapped, reply.request, target, 'unchanged')
  useCall(registration, reply.request, reply, target, url, mapped)
  return { url: url.pathname + url.search, options: { ...registration.fromOptions, getUpstream: () => url.origin } }
}

/**
 * The mapping for a `prefix` given to `fromParameters`: the registration's own when it is the
 * same, else compiled for this call (it is only a few segments). `:params` of `rewritePrefix`
 * that the given prefix does not have take their value from `params`, as in @fastify/http-proxy;
 * compileTarget then refuses a value that is not one safe segment.
 */
function targetFor (registration: Registration, prefix: string, params: Record<string, unknown>): ProxyTarget {
  if (prefix === registration.prefix) return registration.target
  const { upstream, rewritePrefix } = registration.settings
  const normalized = prefix === '/' ? '' : prefix.replace(/\/+$/, '')
  const inPrefix = new Set(normalized.split('/').filter(p => p[0] === ':').map(p => p.slice(1)))
  const filled = rewritePrefix.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (whole, name: string) =>
    inPrefix.has(name) || params[name] === undefined ? whole : encodeURIComponent(String(params[name])))
  return compileTarget({ upstream: upstream as UpstreamOption, prefix: normalized, rewritePrefix: filled })
}
