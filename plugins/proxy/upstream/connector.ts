import type { Socket } from 'node:net'
import { buildConnector, errors } from 'undici'
import type { ProxyTlsOptions } from '../types.js'
import type { ConnectGates } from './connect-gate.js'

// The `connect` option of the proxy's undici Agent (or of a Pool: nothing here is per origin).
// It is undici's own connector, with two additions:
// - each connect is counted for its origin's gate (connect-gate.ts), which bounds the connects
//   in flight per origin;
// - an operator's `connectTimeout` is kept to the millisecond by a native timer, one per connect:
//   undici runs its own on a clock of 1 s resolution (`connectTimeout: 300` fired after up to
//   1.3 s). The default (10 s) stays on undici's clock, where a second's slack does not matter.

/** undici's default, used when the operator set none. */
export const DEFAULT_CONNECT_TIMEOUT = 10_000

/** Agent options that undici's own connector reads when it is built (the rest reach it per connect). */
const CONNECTOR_OPTIONS = ['allowH2', 'autoSelectFamily', 'autoSelectFamilyAttemptTimeout', 'maxCachedSessions', 'socketPath'] as const

export interface ConnectorSettings {
  tls: ProxyTlsOptions
  /** The operator's, kept to the millisecond; undefined: undici's default, on its own clock. */
  connectTimeout: number | undefined
  /** The rest of an `undici` option (allowH2, autoSelectFamily...). */
  agentOptions: Record<string, unknown>
}

type Connector = buildConnector.connector
type Connect = (...args: Parameters<Connector>) => Socket

export function upstreamConnector (settings: ConnectorSettings, gates: ConnectGates): Connector {
  const built: Record<string, unknown> = {}
  for (const key of CONNECTOR_OPTIONS) if (settings.agentOptions[key] !== undefined) built[key] = settings.agentOptions[key]
  const { connectTimeout } = settings
  // Every TLS option given (an `undici.connect` may add cert, key...), verification on unless refused.
  const connect = buildConnector({ ...built, ...settings.tls, timeout: connectTimeout === undefined ? DEFAULT_CONNECT_TIMEOUT : 0 }) as Connect
  const timed = connectTimeout === undefined ? connect : precise(connect, connectTimeout)
  return (options, callback) => {
    const finished = gates.connecting(`${options.protocol}//${options.host ?? options.hostname}`)
    try {
      timed(options, (...args) => {
        try {
          callback(...args)
        } finally {
          // After the client has its socket: a request whose call was cancelled meanwhile has
          // been dropped, and its connection is free for the next one waiting.
          finished()
        }
      })
    } catch (err) {
      finished()
      throw err
    }
  }
}

/** `connect` with a native timer of `timeout` ms instead of undici's own (built with `timeout: 0`). */
function precise (connect: Connect, timeout: number): Connect {
  return (options, callback) => {
    let timer: NodeJS.Timeout | null = null
    let settled = false
    const socket = connect(options, (...args) => {
      settled = true
      if (timer !== null) clearTimeout(timer)
      callback(...args)
    })
    if (!settled) timer = setTimeout(expire, timeout, socket, options, timeout)
    return socket
  }
}

/** As undici's own connect timeout: the socket destroyed with a ConnectTimeoutError, which the client reports. */
function expire (socket: Socket, options: buildConnector.Options, timeout: number): void {
  socket.destroy(new errors.ConnectTimeoutError(`Connect Timeout Error (attempted address: ${options.hostname}:${options.port}, timeout: ${timeout}ms)`))
}
