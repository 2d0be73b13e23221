import type { FastifyRequest } from 'fastify'
import { Dispatcher } from 'undici'
import { describeValue, nearestName, optionChecks } from '../../../lib/option-checks.js'
import { InvalidProxyOptionError } from '../errors.js'
import type { ProxyOptions } from '../types.js'
import { mergeTls, TLS_OPTIONS } from './tls.js'
import { resolveWsClient, resolveWsServer, type WsClientSettings } from './ws-client-options.js'

// @fastify/http-proxy options, mapped onto ours before validation, so that an app switches by
// changing one import. Where an option of theirs and one of ours mean the same thing they are
// aliases: giving both with different values is refused rather than one silently winning.
// Nothing here runs per request.

/** undici Agent options we pass through as given (the rest of `undici` maps onto our own options). */
const AGENT_PASS_THROUGH = new Set(['pipelining', 'keepAliveMaxTimeout', 'keepAliveTimeoutThreshold', 'maxHeaderSize',
  'maxResponseSize', 'strictContentLength', 'allowH2', 'maxRequestsPerClient', 'localAddress', 'autoSelectFamily',
  'autoSelectFamilyAttemptTimeout', 'maxConcurrentStreams'])
const UNDICI_KEYS = ['connections', 'keepAliveTimeout', 'headersTimeout', 'bodyTimeout', 'connect', ...AGENT_PASS_THROUGH]
const { flag, optionalFunction, optionalObject } = optionChecks(InvalidProxyOptionError)

/** reply-from plugin options that change nothing for a streaming proxy (its URL cache, its request log line). */
const HARMLESS = ['disableCache', 'cacheURLs', 'disableRequestLogging'] as const

// Each names what the proxy does instead: per-message features cannot exist on a byte pipe.
const REFUSED: Record<string, string> = {
  wsHooks: 'per-message hooks need a WebSocket parser in the middle, and the proxy pipes bytes: use Fastify hooks (onRequest, preHandler) before the upgrade',
  wsReconnect: 'a byte pipe cannot reconnect the upstream behind the client\'s back: the client reconnects itself',
  http: 'the proxy always uses its undici agent: use headersTimeout, connectTimeout, tls or undici',
  globalAgent: 'the proxy always uses its own undici agent',
  destroyAgent: 'the proxy destroys its own agent on close (a dispatcher given as `undici` is left to its owner)',
  sessionTimeout: 'HTTP/2 to the upstream is `http2: true`; its idle connections follow keepAliveTimeout'
}
const REFUSED_REPLY: Record<string, string> = {
  retryDelay: 'the proxy\'s retry policy is bounded by the request deadline: use `retries` (or replyOptions.retriesCount)',
  timeout: 'use the `headersTimeout` and `bodyTimeout` options (or the deadline plugin)'
}

/** What is left for the undici Agent once the `undici` option has been mapped. */
export type AgentExtras = Record<string, unknown>

/** The http-proxy-only parts of a registration, resolved. */
export interface CompatSettings {
  constraints: Record<string, unknown> | undefined
  routes: string[]
  preRewrite: NonNullable<ProxyOptions['preRewrite']> | null
  handler: NonNullable<ProxyOptions['handler']> | null
  proxyPayloads: boolean
  rewriteLocation: boolean
  /** A Dispatcher the user gave as `undici`: wrapped, never destroyed by the proxy. */
  dispatcher: Dispatcher | null
  agent: AgentExtras
  retryMethods: ReadonlySet<string> | null
  contentTypesToEncode: string[] | undefined
  /** The parts of `wsClientOptions` the WebSocket tunnel applies. */
  wsClient: WsClientSettings
  /** ws options that mean nothing on a byte pipe, named in one log line at registration. */
  ignored: string[]
}

export const COMPAT_OPTIONS = ['constraints', 'routes', 'preRewrite', 'handler', 'base', 'beforeHandler', 'undici', 'proxyPayloads',
  'internalRewriteLocationHeader', 'wsClientOptions', 'wsServerOptions', 'retryMethods', 'maxRetriesOn503',
  'contentTypesToEncode', ...HARMLESS, ...Object.keys(REFUSED)]

/**
 * Returns `options` with every @fastify/http-proxy alias turned into our own option (a copy: the
 * user's object is not changed), and the settings that have no counterpart of ours.
 */
export function fromHttpProxy (given: ProxyOptions): { options: ProxyOptions, compat: CompatSettings } {
  const options: ProxyOptions & Record<string, unknown> = { ...given }
  for (const [name, why] of Object.entries(REFUSED)) {
    if (options[name] !== undefined && options[name] !== false && !emptyHooks(name, options[name])) throw new InvalidProxyOptionError(name, why)
  }
  upstreamAliases(options)
  wsUpstreamAlias(options)
  // Its older name for preHandler.
  if (options.beforeHandler !== undefined) alias(options, 'beforeHandler', 'preHandler', options.beforeHandler)
  const retryMethods = methodList('retryMethods', options.retryMethods)
  replyAliases(options)
  if (options.maxRetriesOn503 !== undefined) alias(options, 'maxRetriesOn503', 'retries', options.maxRetriesOn503, Math.max)
  const { dispatcher, agent } = undiciOptions(options)
  if (options.http2 === true && dispatcher !== null) throw new InvalidProxyOptionError('http2', 'the Dispatcher given as `undici` is used as it is: give it `allowH2` itself, or leave `undici` out')
  const wsClient = resolveWsClient(options.wsClientOptions)
  mergeTls(options, 'wsClientOptions', wsClient.tls)
  if (wsClient.handshakeTimeout !== undefined) alias(options, 'wsClientOptions.handshakeTimeout', 'wsHandshakeTimeout', wsClient.handshakeTimeout)
  const ignored = [...wsClient.ignored, ...resolveWsServer(options.wsServerOptions)]
  return {
    options,
    compat: {
      constraints: optionalObject('constraints', options.constraints as Record<string, unknown> | undefined),
      routes: routes(options.routes),
      preRewrite: optionalFunction('preRewrite', options.preRewrite),
      handler: optionalFunction('handler', options.handler),
      proxyPayloads: flag('proxyPayloads', options.proxyPayloads, true),
      rewriteLocation: flag('internalRewriteLocationHeader', options.internalRewriteLocationHeader, true),
      dispatcher,
      agent,
      retryMethods,
      contentTypesToEncode: stringList('contentTypesToEncode', options.contentTypesToEncode),
      wsClient: wsClient.settings,
      ignored
    }
  }
}

/** `{ onConnect: undefined, ... }` (what http-proxy's own defaults look like) asks for nothing. */
function emptyHooks (name: string, value: unknown): boolean {
  return name === 'wsHooks' && typeof value === 'object' && value !== null && Object.values(value).every(v => v === undefined)
}

/** `base` (reply-from's name) and `replyOptions.getUpstream(request, base)` become `upstream`. */
function upstreamAliases (options: ProxyOptions & Record<string, unknown>): void {
  if (options.base !== undefined) {
    if (options.upstream !== undefined && options.upstream !== '' && options.upstream !== options.base) {
      throw new InvalidProxyOptionError('base', 'conflicts with `upstream` (in @fastify/http-proxy `upstream` overrides it): give one')
    }
    options.upstream = options.base as ProxyOptions['upstream']
  }
  const getUpstream = options.replyOptions?.getUpstream
  if (getUpstream === undefined) return
  if (typeof getUpstream !== 'function') throw new InvalidProxyOptionError('replyOptions.getUpstream', `expected a function, got ${describeValue(getUpstream)}`)
  if (typeof options.upstream === 'function') throw new InvalidProxyOptionError('replyOptions.getUpstream', 'conflicts with an `upstream` function: give one')
  if (Array.isArray(options.upstream)) throw new InvalidProxyOptionError('replyOptions.getUpstream', 'conflicts with a pool of replicas: give one')
  const base = options.upstream ?? ''
  options.upstream = (request: FastifyRequest) => getUpstream(request, base)
}

/** An `upstream` given as ws:// or wss:// is the WebSocket upstream; plain requests go to its http(s) twin. */
function wsUpstreamAlias (options: ProxyOptions & Record<string, unknown>): void {
  if (options.upstream === undefined && options.websocket === true) return webSocketOnly(options)
  if (typeof options.upstream !== 'string' || !/^wss?:\/\//i.test(options.upstream)) return
  options.wsUpstream ??= options.upstream
  options.upstream = options.upstream.replace(/^ws/i, 'http')
}

/**
 * A WebSocket-only registration (`wsUpstream` and `websocket: true`, no `upstream`), as
 * @fastify/http-proxy accepts: plain requests under the prefix go to the same host over http(s).
 */
function webSocketOnly (options: ProxyOptions & Record<string, unknown>): void {
  const ws = options.wsUpstream
  if (typeof ws === 'string') options.upstream = ws.replace(/^ws/i, 'http')
  else if (typeof ws === 'function') options.upstream = (request: FastifyRequest) => String(ws(request)).replace(/^ws/i, 'http')
}

/** replyOptions that are top-level options of ours: moved there, refusing a conflicting pair. */
function replyAliases (options: ProxyOptions & Record<string, unknown>): void {
  if (options.replyOptions === undefined || options.replyOptions === null || typeof options.replyOptions !== 'object') return
  const reply: Record<string, unknown> = { ...options.replyOptions }
  delete reply.getUpstream
  for (const [name, why] of Object.entries(REFUSED_REPLY)) {
    if (reply[name] !== undefined) throw new InvalidProxyOptionError(`replyOptions.${name}`, why)
  }
  for (const name of ['rewriteHeaders', 'rewriteRequestHeaders'] as const) {
    if (reply[name] === undefined) continue
    if (options[name] !== undefined && options[name] !== reply[name]) throw new InvalidProxyOptionError(`replyOptions.${name}`, `conflicts with the top-level \`${name}\`: give one`)
    options[name] = reply[name] as never
    delete reply[name]
  }
  // Both are retry counts in reply-from (connection errors, 503s); ours is one count for both.
  for (const name of ['retriesCount', 'maxRetriesOn503'] as const) {
    if (reply[name] === undefined) continue
    alias(options, `replyOptions.${name}`, 'retries', reply[name], Math.max)
    delete reply[name]
  }
  options.replyOptions = reply as ProxyOptions['replyOptions']
}

/** `undici`: `true` (reply-from's switch; we always use undici), Agent options, or a Dispatcher. */
function undiciOptions (options: ProxyOptions & Record<string, unknown>): { dispatcher: Dispatcher | null, agent: AgentExtras } {
  const value = options.undici
  if (value === undefined || value === true) return { dispatcher: null, agent: {} }
  if (value instanceof Dispatcher) return { dispatcher: value, agent: {} }
  if (typeof value !== 'object' || value === null) throw new InvalidProxyOptionError('undici', `expected true, undici Agent options or an undici Dispatcher, got ${describeValue(value)}`)
  const agent: AgentExtras = {}
  for (const [key, setting] of Object.entries(value)) {
    if (setting === undefined) continue
    if (key === 'connections' || key === 'keepAliveTimeout' || key === 'headersTimeout' || key === 'bodyTimeout') {
      alias(options, `undici.${key}`, key, setting)
    } else if (key === 'connect') {
      connectOptions(options, setting)
    } else if (AGENT_PASS_THROUGH.has(key)) {
      agent[key] = setting
    } else {
      throw new InvalidProxyOptionError(`undici.${key}`, notSupported(key, UNDICI_KEYS, 'connections, pipelining, keepAliveTimeout, headersTimeout, bodyTimeout, connect and undici Agent tuning options are'))
    }
  }
  return { dispatcher: null, agent }
}

function connectOptions (options: ProxyOptions & Record<string, unknown>, connect: unknown): void {
  if (typeof connect !== 'object' || connect === null) throw new InvalidProxyOptionError('undici.connect', `expected an object (a connector function is not supported), got ${describeValue(connect)}`)
  const tls: Record<string, unknown> = {}
  for (const [key, setting] of Object.entries(connect)) {
    if (setting === undefined) continue
    if (key === 'timeout') {
      alias(options, 'undici.connect.timeout', 'connectTimeout', setting)
    } else if (TLS_OPTIONS.has(key)) {
      tls[key] = setting
    } else {
      throw new InvalidProxyOptionError(`undici.connect.${key}`, notSupported(key, ['timeout', ...TLS_OPTIONS], 'timeout and TLS options are'))
    }
  }
  mergeTls(options, 'undici.connect', tls)
}

/** `not supported (what is)`, or the supported name the key is a typo of. */
function notSupported (key: string, supported: Iterable<string>, what: string): string {
  const nearest = nearestName(key, supported)
  return `not supported (${nearest === undefined ? what : `did you mean ${nearest}?`})`
}

/** Sets our option `ours` from their `theirs`; both given and different is refused, unless `merge` says how. */
function alias (options: Record<string, unknown>, theirs: string, ours: string, value: unknown, merge?: (a: number, b: number) => number): void {
  const current = options[ours]
  if (current === undefined || current === value) {
    options[ours] = value
  } else if (merge !== undefined && typeof current === 'number' && typeof value === 'number') {
    options[ours] = merge(current, value)
  } else {
    throw new InvalidProxyOptionError(theirs, `conflicts with \`${ours}\` (${String(current)}): give one`)
  }
}

function routes (value: unknown): string[] {
  if (value === undefined) return ['/', '/*']
  if (!Array.isArray(value) || value.length === 0 || !value.every(r => typeof r === 'string' && r[0] === '/')) {
    throw new InvalidProxyOptionError('routes', `expected a non-empty array of paths starting with /, got ${describeValue(value)}`)
  }
  return value
}

function methodList (name: string, value: unknown): ReadonlySet<string> | null {
  return value === undefined ? null : new Set(stringList(name, value))
}

function stringList (name: string, value: unknown): string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every(v => typeof v === 'string')) throw new InvalidProxyOptionError(name, `expected an array of strings, got ${describeValue(value)}`)
  return value
}
