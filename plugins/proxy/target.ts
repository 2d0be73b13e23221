import type { FastifyRequest } from 'fastify'
import { BadPathError, InvalidProxyOptionError, InvalidUpstreamError, PathNotFoundError } from './errors.js'
import { describeUrl, describeValue } from '../../lib/option-checks.js'

// Maps an incoming request to the upstream URL, and is the one place that keeps the prefix
// from being escaped. The WebSocket pass-through imports it too, so plain HTTP and upgrades
// answer path tricks identically.
//
// The mapping works on the RAW request target (`request.raw.url`), never on Fastify's decoded
// params: what we check is exactly what we forward. Each path segment after the prefix is
// checked once decoded (`..`, `%2e%2e`, `.%2E;x`), and anything that could be read as a
// separator by some upstream (`%2f`, `\`, `%5c`, `//`) is refused instead of guessed at. The
// URL is then built by string concatenation under the upstream's origin, so no input can
// change the host (`//evil.example/x` and absolute-form targets are refused before that).

/** `upstream` as users give it: a URL, or a function choosing one per request. */
export type UpstreamOption = string | ((request: FastifyRequest) => string)

export interface TargetOptions {
  /** http(s) URL (ws/wss are accepted and mapped to http/https, for the WebSocket pass-through). */
  upstream: UpstreamOption
  /** The full route prefix as registered in Fastify, parent prefixes included, e.g. `/api/:tenant`. */
  prefix: string
  /** Path put in place of the prefix upstream; may use the prefix's `:params`. Default ''. */
  rewritePrefix?: string
}

type Segment = { literal: string } | { param: string }

interface UpstreamBase {
  origin: string
  /** The upstream URL's own path without a trailing slash, e.g. '' or '/base'. */
  path: string
}

/** A compiled mapping; build it once per registration with `compileTarget`. */
export interface ProxyTarget {
  readonly prefix: readonly Segment[]
  readonly rewritePrefix: readonly Segment[]
  readonly base: UpstreamBase | null
  readonly upstream: UpstreamOption
}

// Characters allowed raw in a path: visible ASCII except `"`, `#` and `\`.
const SAFE_PATH = /^[\x21\x24-\x5b\x5d-\x7e]*$/
const SAFE_QUERY = /^[\x21\x22\x24-\x7e]*$/
const QUERY_ENCODED = /["'<>]/
const QUERY_ENCODED_ALL = /["'<>]/g
const QUERY_ESCAPES: Record<string, string> = { '"': '%22', "'": '%27', '<': '%3C', '>': '%3E' }
const ENCODED_SEPARATOR = /%(?:2f|5c)/i
const ENCODED_SEPARATOR_OR_DOT = /%(?:2e|2f|5c)/i
const CONTROL = /[\x00-\x1f\x7f]/ // eslint-disable-line no-control-regex
const PARAM = /^:([A-Za-z_][A-Za-z0-9_]*)$/
// Literal segments: unreserved and sub-delims, `%`, and non-ASCII letters (kept percent-encoded).
const LITERAL = /^[A-Za-z0-9\-._~!$&'()+,=@%\u0080-\uffff]+$/
const NON_ASCII = /[\u0080-\uffff]+/g
const ENCODED_HEX = /%[0-9a-f]{2}/gi
const PROTOCOLS: Record<string, string> = { 'http:': 'http:', 'https:': 'https:', 'ws:': 'http:', 'wss:': 'https:' }

/** Validates and compiles the mapping; throws InvalidProxyOptionError (at registration). */
export function compileTarget (options: TargetOptions): ProxyTarget {
  const prefix = compilePath('prefix', options.prefix, null)
  const names = new Set(prefix.flatMap(s => 'param' in s ? [s.param] : []))
  const rewritePrefix = compilePath('rewritePrefix', options.rewritePrefix ?? '', names)
  let base: UpstreamBase | null = null
  if (typeof options.upstream === 'string') {
    base = parseUpstream(options.upstream)
    if (base === null) {
      throw new InvalidProxyOptionError('upstream', `expected an absolute http(s) URL without query, fragment or credentials, got ${describeUrl(options.upstream)}`)
    }
  }
  return { prefix, rewritePrefix, base, upstream: options.upstream }
}

/**
 * upstreamUrl(request, target) -> URL
 *
 * The absolute upstream URL for `request`: upstream origin + upstream path + rewritePrefix
 * (params substituted, each re-encoded as one segment) + the request path after the prefix
 * (raw, as received) + the raw query string. Stable API: the WebSocket pass-through uses it.
 *
 * Throws (never returns a URL outside the upstream base):
 * - BadPathError (400, FST_STREAMLINE_PROXY_BAD_PATH): not origin-form, forbidden characters,
 *   dot segments (also encoded or with `;`), encoded `/` or `\`, empty segments, malformed `%`.
 * - PathNotFoundError (404, FST_STREAMLINE_PROXY_NOT_FOUND): the raw path does not start with
 *   the prefix literally (it matched the route only after normalization).
 * - InvalidUpstreamError (500): an `upstream` function returned something that is not a URL.
 */
export function upstreamUrl (request: FastifyRequest, target: ProxyTarget): URL {
  return mapUrl(request.raw.url ?? '', request, target, 'not-found')
}

/**
 * What a URL that does not start with the prefix maps to: a 404 (requests), the path as it is
 * under the upstream without `rewritePrefix` (`reply.fromParameters`, as @fastify/http-proxy), or
 * the same but only when there is no `rewritePrefix` to stay under (`preRewrite`: a 400 otherwise).
 */
export type OutsidePrefix = 'not-found' | 'unchanged' | 'confined'

/** upstreamUrl for a URL other than the request's own (a preRewrite result, a fromParameters argument): same checks. */
export function mapUrl (raw: string, request: FastifyRequest, target: ProxyTarget, outside: OutsidePrefix): URL {
  const { origin, pathname, search } = mapTarget(raw, request, target, outside)
  return new URL(origin + pathname + search)
}

/** An upstream URL in pieces, as a URL object would give them (what the HTTP proxy sends). */
export interface UpstreamTarget {
  origin: string
  pathname: string
  search: string
}

/**
 * mapUrl without building a URL object: the proxy's per-request path, where reply-from parses the
 * URL again anyway. The query is percent-encoded as the URL parser would (see QUERY_ENCODED).
 */
export function mapTarget (raw: string, request: FastifyRequest, target: ProxyTarget, outside: OutsidePrefix): UpstreamTarget {
  if (raw.charCodeAt(0) !== 47) throw new BadPathError('the request target must be a path')
  const queryAt = raw.indexOf('?')
  const path = queryAt === -1 ? raw : raw.slice(0, queryAt)
  const query = queryAt === -1 ? '' : raw.slice(queryAt)
  if (!SAFE_PATH.test(path) || !SAFE_QUERY.test(query)) throw new BadPathError('forbidden character')

  const segments = path.split('/')
  const params = new Map<string, string>()
  let i = matchPrefix(segments, target, params)
  let rewritePrefix = target.rewritePrefix
  if (i === -1) {
    if (outside === 'not-found') throw new PathNotFoundError()
    if (outside === 'confined' && rewritePrefix.length > 0) throw new BadPathError('outside the rewritten prefix')
    i = 1
    rewritePrefix = []
  }
  const rest = segments.slice(i)
  for (let j = 0; j < rest.length; j++) {
    // An empty segment is only allowed last (a trailing slash): `//` is refused.
    if (rest[j] === '' && j !== rest.length - 1) throw new BadPathError('empty path segment')
    decodeSegment(rest[j])
  }

  const base = target.base ?? upstreamFor(request, target.upstream)
  const rewritten = rewritePrefix.length === 0 ? '' : rewritePrefix.map(s => 'literal' in s ? s.literal : params.get(s.param)).join('/')
  const pathname = base.path + (rewritten === '' ? '' : '/' + rewritten) + (rest.length === 0 ? '' : '/' + rest.join('/'))
  return { origin: base.origin, pathname: pathname === '' ? '/' : pathname, search: encodeQuery(query) }
}

/**
 * The query as `new URL()` gives it (`search`): the WHATWG URL parser percent-encodes these four
 * of the characters SAFE_QUERY lets through, and drops a lone `?`.
 */
function encodeQuery (query: string): string {
  if (query === '?') return ''
  return QUERY_ENCODED.test(query) ? query.replace(QUERY_ENCODED_ALL, c => QUERY_ESCAPES[c]) : query
}

/** The index of the first segment after the prefix (its params collected), or -1 when the path is not under it. */
function matchPrefix (segments: string[], target: ProxyTarget, params: Map<string, string>): number {
  let i = 1
  for (const expected of target.prefix) {
    const actual = segments[i++]
    if (actual === undefined || actual === '') return -1
    if ('literal' in expected) {
      if (actual !== expected.literal && !sameEncoded(actual, expected.literal)) return -1
    } else {
      params.set(expected.param, encodeURIComponent(decodeSegment(actual)))
    }
  }
  return i
}

/** A raw segment that differs from a literal one only in the case of its `%XX` escapes (`%c3%a9`, `%C3%A9`). */
function sameEncoded (actual: string, literal: string): boolean {
  return actual.includes('%') && actual.replace(ENCODED_HEX, hex => hex.toUpperCase()) === literal
}

/** Decodes one raw segment, refusing anything that could act as a separator or a dot segment. */
function decodeSegment (segment: string): string {
  // The usual segment has no `%`: it decodes to itself, and SAFE_PATH has already refused
  // control characters, so only the dot-segment check applies (it runs on every request).
  if (!segment.includes('%')) {
    if (isDotSegment(segment)) throw new BadPathError('dot segment')
    return segment
  }
  if (ENCODED_SEPARATOR.test(segment)) throw new BadPathError('encoded path separator')
  let decoded: string
  try {
    decoded = decodeURIComponent(segment)
  } catch {
    throw new BadPathError('malformed percent-encoding')
  }
  if (isDotSegment(decoded)) throw new BadPathError('dot segment')
  if (ENCODED_SEPARATOR_OR_DOT.test(decoded)) throw new BadPathError('double-encoded character')
  if (CONTROL.test(decoded)) throw new BadPathError('control character')
  return decoded
}

/** `.` or `..`, also with path parameters (`..;x`: `..` for servlet containers). */
function isDotSegment (decoded: string): boolean {
  const end = decoded.indexOf(';')
  const name = end === -1 ? decoded : decoded.slice(0, end)
  return name === '.' || name === '..'
}

function upstreamFor (request: FastifyRequest, upstream: UpstreamOption): UpstreamBase {
  const base = typeof upstream === 'function' ? parseUpstream(upstream(request)) : parseUpstream(upstream)
  if (base === null) throw new InvalidUpstreamError()
  return base
}

function parseUpstream (value: unknown): UpstreamBase | null {
  if (typeof value !== 'string') return null
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return null
  }
  const protocol = PROTOCOLS[url.protocol]
  if (protocol === undefined || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') return null
  return { origin: `${protocol}//${url.host}`, path: url.pathname.replace(/\/+$/, '') }
}

/** Splits `/a/:b/c` into segments; `params` (for rewritePrefix) lists the names it may use. */
function compilePath (option: string, value: unknown, params: Set<string> | null): Segment[] {
  if (typeof value !== 'string' || (value !== '' && value[0] !== '/')) {
    throw new InvalidProxyOptionError(option, `expected a path starting with /, got ${describeValue(value)}`)
  }
  const parts = value.replace(/\/+$/, '').split('/').slice(1)
  return parts.map(part => {
    const param = PARAM.exec(part)
    if (param !== null) {
      if (params !== null && !params.has(param[1])) {
        throw new InvalidProxyOptionError(option, `:${param[1]} is not a parameter of the prefix`)
      }
      return { param: param[1] }
    }
    if (!LITERAL.test(part) || part === '.' || part === '..' || ENCODED_SEPARATOR_OR_DOT.test(part)) {
      throw new InvalidProxyOptionError(option, `segment "${part}" is not allowed (use literal segments and :params)`)
    }
    // `/café` is served as the request target `/caf%C3%A9`, and sent upstream so.
    return { literal: part.replace(NON_ASCII, encodeURIComponent) }
  })
}
