import type { FastifyRequest } from 'fastify'
import { InvalidWebSocketOptionError } from './ws-errors.js'

/** The WebSocket fields of the proxy's options; every time is in milliseconds. */
export interface WebSocketProxyOptions {
  /** Pass WebSocket upgrades under the prefix through to the upstream. Default false. */
  websocket?: boolean
  /**
   * Where upgrades go instead of `upstream`: same forms (a URL or `(request) => URL`);
   * `ws:`, `wss:`, `http:` and `https:` are accepted. Default: `upstream`.
   */
  wsUpstream?: string | ((request: FastifyRequest) => string)
  /** Close a tunnel after this long without a byte either way. Default 0 (off). */
  wsIdleTimeout?: number
  /** Close a tunnel this long after it opened, busy or not. Default 0 (unlimited). */
  wsMaxStreamDuration?: number
  /**
   * Longest wait for the upstream's answer to the handshake when no request deadline covers
   * it (deadline plugin absent or opted out). Default 30000.
   */
  wsHandshakeTimeout?: number
  /** On `app.close()`, how long open tunnels may finish on their own before they are cut. Default 5000. */
  wsCloseGrace?: number
}

/** The resolved timing settings of one registration. */
export interface TunnelTimings {
  idleTimeout: number
  maxStreamDuration: number
  handshakeTimeout: number
  closeGrace: number
}

export function resolveTunnelTimings (options: WebSocketProxyOptions): TunnelTimings {
  return {
    idleTimeout: duration('wsIdleTimeout', options.wsIdleTimeout, 0),
    maxStreamDuration: duration('wsMaxStreamDuration', options.wsMaxStreamDuration, 0),
    handshakeTimeout: duration('wsHandshakeTimeout', options.wsHandshakeTimeout, 30_000),
    closeGrace: duration('wsCloseGrace', options.wsCloseGrace, 5000)
  }
}

const SCHEMES: Record<string, string> = { 'ws:': 'http:', 'wss:': 'https:', 'http:': 'http:', 'https:': 'https:' }

/**
 * An upstream URL for the handshake, as http: or https: (the handshake is an HTTP request).
 * Throws a clear error for anything else, at registration for strings and per request for functions.
 */
export function handshakeUpstream (value: string, name = 'wsUpstream'): string {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new InvalidWebSocketOptionError(name, `expected an absolute ws:, wss:, http: or https: URL, got ${JSON.stringify(value)}`)
  }
  const scheme = SCHEMES[url.protocol]
  if (scheme === undefined) {
    throw new InvalidWebSocketOptionError(name, `expected a ws:, wss:, http: or https: URL, got ${url.protocol}`)
  }
  // Swap the scheme textually: URL refuses to change a special scheme's protocol to another family.
  return scheme + value.slice(url.protocol.length)
}

export function validateWsUpstream (value: unknown): void {
  if (value === undefined || typeof value === 'function') return
  if (typeof value !== 'string') throw new InvalidWebSocketOptionError('wsUpstream', 'expected a URL string or a function (request) => string')
  handshakeUpstream(value)
}

function duration (name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidWebSocketOptionError(name, `expected milliseconds (a finite number >= 0), got ${String(value)}`)
  }
  return value
}
