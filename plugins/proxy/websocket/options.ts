import { optionChecks } from '../../../lib/option-checks.js'
import { InvalidProxyOptionError } from '../errors.js'

const { duration } = optionChecks(InvalidProxyOptionError)

/** The WebSocket tunnel's timing options of the proxy; every time is in milliseconds. */
export interface WebSocketTimingOptions {
  /** Close a tunnel (a `1001` close frame to each side) after this long without a byte either way. Default 0 (off). */
  wsIdleTimeout?: number
  /** Close a tunnel (a `1001` close frame to each side) this long after it opened, busy or not. Default 0 (unlimited). */
  wsMaxStreamDuration?: number
  /**
   * Longest wait for the upstream's answer to the handshake when no request deadline covers
   * it (deadline plugin absent, or the route opted out). Default 30000; 0 = none.
   */
  wsHandshakeTimeout?: number
  /**
   * On `app.close()` or a timeout a tunnel gets a `1001 Going Away` close frame on both sides; this
   * is the longest wait for those close handshakes before what is left is cut. Default 5000.
   */
  wsCloseGrace?: number
}

export const WS_TIMING_OPTIONS = ['wsIdleTimeout', 'wsMaxStreamDuration', 'wsHandshakeTimeout', 'wsCloseGrace'] as const

/** The resolved timing settings of one registration. */
export interface TunnelTimings {
  idleTimeout: number
  maxStreamDuration: number
  handshakeTimeout: number
  closeGrace: number
}

export function resolveTunnelTimings (options: WebSocketTimingOptions): TunnelTimings {
  return {
    idleTimeout: duration('wsIdleTimeout', options.wsIdleTimeout, 0),
    maxStreamDuration: duration('wsMaxStreamDuration', options.wsMaxStreamDuration, 0),
    handshakeTimeout: duration('wsHandshakeTimeout', options.wsHandshakeTimeout, 30_000),
    closeGrace: duration('wsCloseGrace', options.wsCloseGrace, 5000)
  }
}
