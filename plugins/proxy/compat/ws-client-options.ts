import type { FastifyRequest } from 'fastify'
import { stringify } from 'node:querystring'
import { InvalidProxyOptionError } from '../errors.js'
import type { RequestHeaderRewrite } from '../types.js'
import { TLS_OPTIONS } from './tls.js'
import { describeValue } from '../../../lib/option-checks.js'

// @fastify/http-proxy's `wsClientOptions` / `wsServerOptions` configure the two `ws` endpoints it
// puts in the middle of every WebSocket. The proxy has none: it forwards the client's handshake
// and then pipes bytes, so frames are never parsed, compressed or size-checked here. What still
// means something on a byte pipe is taken: the upstream handshake's extra headers, its query
// string and its TLS (shared with plain HTTP), its timeout. The rest is named in one log line at
// registration; what would silently drop a check the user relies on is refused.

type QueryString = Record<string, unknown> | ((search: string, reqUrl: string, request: FastifyRequest) => string)
type HeaderRewrite = (headers: Record<string, unknown>, request: FastifyRequest) => Record<string, unknown>

/** The parts of `wsClientOptions` the tunnel applies. */
export interface WsClientSettings {
  headers: Record<string, unknown>
  rewrite: HeaderRewrite | null
  queryString: QueryString | null
}

const REFUSED_SERVER: Record<string, string> = {
  verifyClient: 'the proxy has no WebSocket server: check the upgrade in an onRequest or preHandler hook (they run before it)',
  handleProtocols: 'the subprotocol is chosen by the upstream and relayed as it is'
}

/**
 * Splits `wsClientOptions`: the handshake settings, the TLS and timeout options (returned for
 * the caller to map onto `tls` and `wsHandshakeTimeout`), and the names ignored.
 */
export function resolveWsClient (value: unknown): { settings: WsClientSettings, tls: Record<string, unknown>, handshakeTimeout: unknown, ignored: string[] } {
  const settings: WsClientSettings = { headers: {}, rewrite: null, queryString: null }
  const result = { settings, tls: {} as Record<string, unknown>, handshakeTimeout: undefined as unknown, ignored: [] as string[] }
  if (value === undefined) return result
  if (typeof value !== 'object' || value === null) throw new InvalidProxyOptionError('wsClientOptions', `expected an object, got ${describeValue(value)}`)
  for (const [key, setting] of Object.entries(value)) {
    if (setting === undefined) continue
    if (key === 'headers') {
      if (typeof setting !== 'object' || setting === null) throw new InvalidProxyOptionError('wsClientOptions.headers', `expected an object, got ${describeValue(setting)}`)
      settings.headers = setting as Record<string, unknown>
    } else if (key === 'rewriteRequestHeaders') {
      if (typeof setting !== 'function') throw new InvalidProxyOptionError('wsClientOptions.rewriteRequestHeaders', `expected a function, got ${describeValue(setting)}`)
      settings.rewrite = setting as HeaderRewrite
    } else if (key === 'queryString') {
      if (typeof setting !== 'function' && (typeof setting !== 'object' || setting === null)) throw new InvalidProxyOptionError('wsClientOptions.queryString', `expected an object or a function, got ${describeValue(setting)}`)
      settings.queryString = setting as QueryString
    } else if (TLS_OPTIONS.has(key)) {
      result.tls[key] = setting
    } else if (key === 'handshakeTimeout') {
      result.handshakeTimeout = setting
    } else {
      result.ignored.push(`wsClientOptions.${key}`)
    }
  }
  return result
}

/** `wsServerOptions`: names ignored (frame-level settings of a server the proxy does not have). */
export function resolveWsServer (value: unknown): string[] {
  if (value === undefined) return []
  if (typeof value !== 'object' || value === null) throw new InvalidProxyOptionError('wsServerOptions', `expected an object, got ${describeValue(value)}`)
  for (const [key, why] of Object.entries(REFUSED_SERVER)) {
    if ((value as Record<string, unknown>)[key] !== undefined) throw new InvalidProxyOptionError(`wsServerOptions.${key}`, why)
  }
  return Object.keys(value).map(key => `wsServerOptions.${key}`)
}

/** The tunnel's upstream URL with `wsClientOptions.queryString` applied, as @fastify/http-proxy builds it. */
export function wsTarget (target: (request: FastifyRequest) => URL, ws: WsClientSettings): (request: FastifyRequest) => URL {
  const queryString = ws.queryString
  if (queryString === null) return target
  return (request) => {
    const url = target(request)
    url.search = typeof queryString === 'function' ? queryString(url.search, request.url, request) : stringify(queryString as Record<string, string>)
    return url
  }
}

/**
 * The handshake's header rewrite: the client's headers (the tunnel forwards them all, cookies
 * included), plus `wsClientOptions.headers` as `wsClientOptions.rewriteRequestHeaders` returns
 * them, then the top-level `rewriteRequestHeaders`.
 */
export function wsRequestHeaders (rewrite: RequestHeaderRewrite | null, ws: WsClientSettings): RequestHeaderRewrite | null {
  if (ws.rewrite === null && Object.keys(ws.headers).length === 0) return rewrite
  return (request, headers) => {
    const extra = ws.rewrite === null ? ws.headers : ws.rewrite({ ...ws.headers }, request)
    Object.assign(headers, extra)
    return rewrite === null ? headers : rewrite(request, headers)
  }
}
