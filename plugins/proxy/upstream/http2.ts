import { Client, Pool, type Dispatcher } from 'undici'

// HTTP/2 to the upstream (`http2: true`), on the same undici Agent, so that the proxy's signal,
// timers, handler and pools apply unchanged. Over https:// the TLS handshake offers h2 by ALPN
// (`allowH2`; an upstream that only speaks HTTP/1.1 is still served); over http:// the
// connection speaks h2 from its first byte (prior knowledge, h2c: undici's `useH2c`), as gRPC
// servers expect.
//
// One caveat of undici 7: an h2 session runs a request whose body is a stream (every proxied
// POST, so every gRPC call) only while no other request runs on it (client-h2.js `busy`;
// nodejs/undici#5524, lifted in undici 8). The Agent keeps `pipelining: 1`, so its per-origin
// Pool opens another connection for a concurrent call rather than parking it behind a running
// one, which for a long stream would mean forever. Calls one after another share one connection.

type Connect = Dispatcher.DispatchOptions & Record<string, unknown>
type Connector = (options: { protocol: string } & Record<string, unknown>, callback: (err: Error | null, socket: unknown) => void) => unknown

/** The Agent options `http2` adds (none when it is off). */
export function http2AgentOptions (enabled: boolean): Record<string, unknown> {
  return enabled ? HTTP2_OPTIONS : NONE
}

const NONE = {}
const HTTP2_OPTIONS = { allowH2: true, factory: originDispatcher }

/** undici's default factory (a Client for `connections: 1`, else a Pool), with h2c for http:// origins. */
function originDispatcher (origin: string | URL, options: Record<string, unknown>): Dispatcher {
  const cleartext = String(origin).startsWith('http:')
  const given = cleartext ? { ...options, connect: priorKnowledge(options.connect) } : options
  return options.connections === 1 ? new Client(origin, given) : new Pool(origin, given)
}

/** Connect options (an object) gain `useH2c`; a connector function has its cleartext sockets marked h2, as `useH2c` does. */
function priorKnowledge (connect: unknown): unknown {
  if (typeof connect !== 'function') return { ...(connect as Connect | undefined), useH2c: true }
  const connector = connect as Connector
  return (options: Parameters<Connector>[0], callback: Parameters<Connector>[1]) => connector(options, (err, socket) => {
    if (err === null && options.protocol === 'http:') (socket as { alpnProtocol: string }).alpnProtocol = 'h2'
    callback(err, socket)
  })
}
