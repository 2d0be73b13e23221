import type { HTTPMethods, onRequestHookHandler, preHandlerHookHandler, preValidationHookHandler } from 'fastify'
import { InvalidProxyOptionError } from './errors.js'
import type { ProxyOptions, ProxyReplyOptions, ProxyTlsOptions, UpstreamOption } from './types.js'
import { resolveTunnelTimings, WS_TIMING_OPTIONS, type TunnelTimings } from './websocket/options.js'
import { COMPAT_OPTIONS, fromHttpProxy, type CompatSettings } from './compat/options.js'
import { describeUrl, describeValue, optionChecks } from '../../lib/option-checks.js'
import { POOL_OPTIONS, resolvePool } from './pool-options.js'
import type { PoolSettings } from './upstream/pool.js'
import { resolveDownloadResume, resolveSseResume, type DownloadResumeSettings, type SseResumeSettings } from './upstream/sse-resume-options.js'

/** The registration's options, validated and with defaults applied. */
export interface ProxySettings {
  upstream: UpstreamOption
  prefix: string
  rewritePrefix: string
  httpMethods: HTTPMethods[]
  onRequest: onRequestHookHandler[]
  preValidation: preValidationHookHandler[]
  preHandler: preHandlerHookHandler[]
  config: NonNullable<ProxyOptions['config']>
  rewriteRequestHeaders: NonNullable<ProxyOptions['rewriteRequestHeaders']> | null
  rewriteHeaders: NonNullable<ProxyOptions['rewriteHeaders']> | null
  replyOptions: ProxyReplyOptions
  connections: number | null
  keepAliveTimeout: number
  /** undefined: not set, undici's default (10 s) on its own clock; set, kept to the millisecond. */
  connectTimeout: number | undefined
  /** HTTP/2 to the upstream: h2c (prior knowledge) over http://, ALPN over https:// (upstream/http2.ts). */
  http2: boolean
  /** undefined: not set by the user, the default depends on whether the deadline plugin is there. */
  headersTimeout: number | undefined
  bodyTimeout: number | undefined
  tls: Required<Pick<ProxyTlsOptions, 'rejectUnauthorized'>> & ProxyTlsOptions
  retries: number
  /** The upstream's replicas when it is a pool (`upstream` is then the pool's name); null: one upstream. */
  pool: PoolSettings | null
  websocket: boolean
  serverTiming: boolean
  wsUpstream: UpstreamOption | undefined
  wsTimings: TunnelTimings
  drainTimeout: number
  /** The `retry:` value (ms) written to an event stream ended by a drain; false: none. */
  drainRetry: number | false
  /** Silence (ms) after which an event stream gets a heartbeat comment; 0: none. */
  sseHeartbeat: number
  sseResume: SseResumeSettings | null
  resumeDownloads: DownloadResumeSettings | null
  /** The @fastify/http-proxy options without a counterpart of ours. */
  compat: CompatSettings
}

export const DEFAULT_METHODS: HTTPMethods[] = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT']
/** Used when the deadline plugin is not registered: a quiet SSE stream lives at least 5 minutes. */
export const FALLBACK_HEADERS_TIMEOUT = 60_000
export const FALLBACK_BODY_TIMEOUT = 300_000

// Fastify's own register options (`logLevel`, ...) arrive here too; anything else unknown is a typo.
const KNOWN = new Set(['upstream', 'prefix', 'rewritePrefix', 'httpMethods', 'onRequest', 'preValidation', 'preHandler',
  'config', 'rewriteRequestHeaders', 'rewriteHeaders', 'replyOptions', 'connections', 'keepAliveTimeout', 'connectTimeout',
  'http2', 'headersTimeout', 'bodyTimeout', 'tls', 'retries', 'websocket', 'serverTiming', 'wsUpstream', ...WS_TIMING_OPTIONS,
  'drainTimeout', 'drainRetry', 'sseHeartbeat', 'sseResume', 'resumeDownloads', 'logLevel', 'logSerializers', ...COMPAT_OPTIONS, ...POOL_OPTIONS])
// A user's onResponse / onError replaces the proxy's relay / error answer (README: what that costs).
const REPLY_OPTIONS = new Set(['queryString', 'method', 'contentType', 'onResponse', 'onError', 'body'])
const { flag, integer, knownKeys, optionalFunction, optionalObject } = optionChecks(InvalidProxyOptionError)
const UPSTREAM_URL = /^(https?):\/\//i
const WS_UPSTREAM_URL = /^(wss?|https?):\/\//i

export function resolveOptions (given: ProxyOptions): ProxySettings {
  if (typeof given !== 'object' || given === null) throw new InvalidProxyOptionError('options', `expected an object, got ${describeValue(given)}`)
  const { options, compat } = fromHttpProxy(given)
  knownKeys('', options, KNOWN)
  const { upstream: first, pool, retries } = resolvePool(options)
  return {
    upstream: upstream('upstream', first, UPSTREAM_URL, true),
    prefix: path('prefix', options.prefix ?? '/'),
    rewritePrefix: options.rewritePrefix ?? '',
    httpMethods: methods(options.httpMethods),
    onRequest: hooks('onRequest', options.onRequest),
    preValidation: hooks('preValidation', options.preValidation),
    preHandler: hooks('preHandler', options.preHandler),
    config: optionalObject('config', options.config) ?? {},
    rewriteRequestHeaders: optionalFunction('rewriteRequestHeaders', options.rewriteRequestHeaders),
    rewriteHeaders: optionalFunction('rewriteHeaders', options.rewriteHeaders),
    replyOptions: replyOptions(options.replyOptions),
    connections: options.connections === null ? null : integer('connections', options.connections, null, 1),
    keepAliveTimeout: integer('keepAliveTimeout', options.keepAliveTimeout, 4000, 1) ?? 4000,
    connectTimeout: integer('connectTimeout', options.connectTimeout, undefined, 1) ?? undefined,
    http2: flag('http2', options.http2, false),
    headersTimeout: integer('headersTimeout', options.headersTimeout, undefined, 0) ?? undefined,
    bodyTimeout: integer('bodyTimeout', options.bodyTimeout, undefined, 0) ?? undefined,
    tls: tls(options.tls),
    retries,
    pool,
    websocket: flag('websocket', options.websocket, false),
    serverTiming: flag('serverTiming', options.serverTiming, false),
    wsUpstream: options.wsUpstream === undefined ? undefined : upstream('wsUpstream', options.wsUpstream, WS_UPSTREAM_URL, false),
    wsTimings: resolveTunnelTimings(options),
    drainTimeout: integer('drainTimeout', options.drainTimeout, 10_000, 0),
    drainRetry: options.drainRetry === false ? false : integer('drainRetry', options.drainRetry, 1000, 0),
    sseHeartbeat: integer('sseHeartbeat', options.sseHeartbeat, 0, 0),
    sseResume: resolveSseResume(options.sseResume, (options.config ?? {}) as Record<string, unknown>),
    resumeDownloads: resolveDownloadResume(options.resumeDownloads, (options.config ?? {}) as Record<string, unknown>),
    compat
  }
}

function path (name: string, value: unknown): string {
  if (typeof value !== 'string' || value[0] !== '/') throw new InvalidProxyOptionError(name, `expected a path starting with /, got ${describeValue(value)}`)
  // '/api/' serves the same routes as '/api'; only the root keeps its slash.
  return value.replace(/(.)\/+$/, '$1')
}

function upstream (name: string, value: unknown, protocols: RegExp, required: boolean): UpstreamOption {
  if (value === undefined && required) throw new InvalidProxyOptionError(name, 'is required (an http:// or https:// URL, or a function (request) => URL; or give wsUpstream with websocket: true)')
  if (typeof value === 'function') return value as UpstreamOption
  if (typeof value !== 'string' || !protocols.test(value)) {
    throw new InvalidProxyOptionError(name, `expected a URL starting with ${protocols === UPSTREAM_URL ? 'http:// or https://' : 'ws://, wss://, http:// or https://'}, or a function (request) => URL, got ${describeUrl(value)}`)
  }
  return value
}

function methods (value: unknown): HTTPMethods[] {
  if (value === undefined) return DEFAULT_METHODS
  if (!Array.isArray(value) || value.length === 0 || !value.every(m => typeof m === 'string' && /^[A-Z]+$/.test(m))) {
    throw new InvalidProxyOptionError('httpMethods', `expected a non-empty array of upper-case method names, got ${describeValue(value)}`)
  }
  return value as HTTPMethods[]
}

function hooks<T> (name: string, value: T | T[] | undefined): T[] {
  if (value === undefined) return []
  const list = Array.isArray(value) ? value : [value]
  if (!list.every(h => typeof h === 'function')) throw new InvalidProxyOptionError(name, `expected a function or an array of functions, got ${describeValue(value)}`)
  return list
}

function replyOptions (value: ProxyReplyOptions | undefined): ProxyReplyOptions {
  for (const key of Object.keys(optionalObject('replyOptions', value) ?? {})) {
    if (!REPLY_OPTIONS.has(key)) {
      throw new InvalidProxyOptionError(`replyOptions.${key}`, 'is managed by the proxy (use the top-level options rewriteHeaders, rewriteRequestHeaders, retries, headersTimeout)')
    }
  }
  return value ?? {}
}

function tls (value: ProxyTlsOptions | undefined): ProxySettings['tls'] {
  const given = optionalObject('tls', value) ?? {}
  if (given.rejectUnauthorized !== undefined && typeof given.rejectUnauthorized !== 'boolean') {
    throw new InvalidProxyOptionError('tls.rejectUnauthorized', `expected a boolean, got ${describeValue(given.rejectUnauthorized)}`)
  }
  return { ...given, rejectUnauthorized: given.rejectUnauthorized ?? true }
}
