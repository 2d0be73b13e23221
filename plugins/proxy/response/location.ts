import type { OutgoingHttpHeaders } from 'node:http'
import type { UpstreamTarget } from '../target.js'

// `internalRewriteLocationHeader` (on by default, as in @fastify/http-proxy), with the meaning of
// nginx's `proxy_redirect default`: a redirect the upstream points into its own mapped prefix
// (`/v2/orders/7` for a proxy serving `/orders` from `/v2/orders`) must come back under the
// proxy's prefix (`/orders/7`), or the client leaves the proxy's URL space. Same-origin absolute
// URLs (`http://upstream:3000/v2/orders/7`) become the same relative path, as nginx does; any
// other URL (another host, a path outside the mapped prefix) is left alone.
// Only runs for a response that has one of the two headers.

const NAMES = ['location', 'content-location'] as const

/**
 * `mapped`: the request URL the upstream URL was built from (raw path, maybe a preRewrite result),
 * whose first `prefixSegments` segments are the proxy's prefix; `upstream`: that upstream URL.
 * Both end in the same segments after the prefix, which locates the upstream's prefix without
 * redoing the mapping (by segments, not characters: the URL parser may re-encode some).
 */
export function rewriteLocations (headers: OutgoingHttpHeaders, mapped: string, prefixSegments: number, upstream: UpstreamTarget): void {
  let prefixes: { proxy: string, upstream: string } | null = null
  for (const name of NAMES) {
    const value = headers[name]
    if (typeof value !== 'string') continue
    prefixes ??= prefixesOf(mapped, prefixSegments, upstream)
    const rewritten = rewrite(value, upstream.origin, prefixes.upstream, prefixes.proxy)
    if (rewritten !== null) headers[name] = rewritten
  }
}

/** The proxy's and the upstream's path prefixes of this request, each without a trailing slash. */
function prefixesOf (mapped: string, prefixSegments: number, upstream: UpstreamTarget): { proxy: string, upstream: string } {
  const queryAt = mapped.indexOf('?')
  const segments = (queryAt === -1 ? mapped : mapped.slice(0, queryAt)).split('/')
  const restCount = Math.max(0, segments.length - 1 - prefixSegments)
  const upstreamSegments = upstream.pathname.split('/')
  return {
    proxy: withoutTrailingSlash(segments.slice(0, segments.length - restCount).join('/')),
    upstream: withoutTrailingSlash(upstreamSegments.slice(0, Math.max(1, upstreamSegments.length - restCount)).join('/'))
  }
}

function withoutTrailingSlash (path: string): string {
  return path.endsWith('/') ? path.slice(0, -1) : path
}

/** The rewritten value, or null to leave it as it is. */
function rewrite (value: string, origin: string, upstreamPrefix: string, proxyPrefix: string): string | null {
  let path = value
  if (value.startsWith(origin) && (value.length === origin.length || value[origin.length] === '/')) {
    path = value.slice(origin.length) || '/'
  } else if (value[0] !== '/' || value[1] === '/') {
    // Another host, a scheme-relative URL, or a relative reference: not ours to map.
    return null
  }
  if (path !== upstreamPrefix && !startsUnder(path, upstreamPrefix)) return value === path ? null : value
  const rewritten = proxyPrefix + path.slice(upstreamPrefix.length)
  return rewritten === '' || rewritten[0] !== '/' ? '/' + rewritten : rewritten
}

function startsUnder (path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false
  const next = path[prefix.length]
  return next === '/' || next === '?' || next === '#'
}
