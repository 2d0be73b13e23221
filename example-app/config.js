// Every knob of the example comes from the environment, with the defaults the README lists.
// Port 0 picks a free port; the ports actually used are printed at start.

const HOST = '127.0.0.1'
// A DNS name: letters, digits, dashes, dots (UPSTREAM_DNS).
const HOST_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i

/** Reads the example's settings; throws a clear message for a malformed value. */
export function readConfig (env = process.env) {
  return {
    // Every server listens on loopback unless told otherwise (HOST=0.0.0.0 in a container).
    host: env.HOST || HOST,
    ingressPort: integer(env, 'INGRESS_PORT', 3000, 0, 65535),
    livePort: integer(env, 'LIVE_PORT', 3001, 0, 65535),
    // npm start runs the live service as this many replicas, on LIVE_PORT, +10, +20...
    liveReplicas: integer(env, 'LIVE_REPLICAS', 3, 1, 9),
    // The ingress alone (cluster.js, kubernetes/ingress.js): the demo services' host name,
    // every address of which is a replica (`resolve: { dns: true }`); unset: 127.0.0.1.
    upstreamDns: hostName(env, 'UPSTREAM_DNS'),
    filesPort: integer(env, 'FILES_PORT', 3002, 0, 65535),
    // The ingress's gRPC listener (h2c, grpc-ingress.js) and the gRPC demo service behind it.
    grpcPort: integer(env, 'GRPC_PORT', 3003, 0, 65535),
    grpcUpstreamPort: integer(env, 'GRPC_UPSTREAM_PORT', 3004, 0, 65535),
    deadline: {
      timeout: integer(env, 'DEADLINE_TIMEOUT_MS', 2000, 1),
      streamIdleTimeout: integer(env, 'STREAM_IDLE_TIMEOUT_MS', 15000, 0),
      maxStreamDuration: integer(env, 'MAX_STREAM_DURATION_MS', 0, 0)
    },
    server: serverOptions(env),
    https: httpsOptions(env),
    tickMs: integer(env, 'TICK_MS', 1000, 10),
    // The live proxy's `sseResume` (docs/resume.md): a ticker cut by a replica's restart goes on
    // from another replica in the same response. SSE_RESUME=0: off, the browser reconnects.
    sseResume: flag(env, 'SSE_RESUME', true),
    clockDelayMs: integer(env, 'CLOCK_DELAY_MS', 3000, 0),
    slowMs: integer(env, 'SLOW_MS', 5000, 0),
    downloadMb: integer(env, 'DOWNLOAD_MB', 256, 1, 4096),
    // The files service sends the download at this pace (0: as fast as the client reads), so
    // that the default 256 MB take 8 s: the page shows it streaming 6 s past the 2 s timeout.
    downloadMbPerS: integer(env, 'DOWNLOAD_MB_PER_S', 32, 0, 4096),
    // The proxy's drainTimeout: inside close-with-grace's 10 s in start.js, with room to spare.
    drainTimeoutMs: integer(env, 'DRAIN_TIMEOUT_MS', 5000, 0, 8000),
    // kubernetes/ingress.js: on SIGTERM, /ready answers 503 and everything is still served for
    // this long (load balancers and kube-proxy stop sending new connections), then the drain.
    unreadyDelayMs: integer(env, 'UNREADY_DELAY_MS', 0, 0, 30_000),
    logLevel: env.LOG_LEVEL || 'warn'
  }
}

/**
 * Fastify's constructor options against slow clients (slowloris), to spread into `Fastify({...})`.
 * Node drops a connection whose request head is not complete after `headersTimeout` (a silent
 * connection too) and one whose whole request is not received after `requestTimeout`, with a 408.
 * Left alone, a connection may hold its head open 60 s (checked only every 30 s) and its body
 * forever: Fastify sets Node's `requestTimeout` to 0. 10 s is ample for any real client or load
 * balancer to send a head. Proxied routes are also bounded by the deadline; `requestTimeout`
 * guards the app's own routes, so raise it if they take uploads slower than 60 s.
 * `connectionsCheckingInterval` can only be given to the server's constructor, hence `http`;
 * `requestTimeout` goes at the top level as well, or Fastify's default 0 would override it.
 */
function serverOptions (env) {
  const headersTimeout = integer(env, 'HEADERS_TIMEOUT_MS', 10_000, 1)
  const requestTimeout = integer(env, 'REQUEST_TIMEOUT_MS', 60_000, 0)
  if (requestTimeout !== 0 && requestTimeout < headersTimeout) {
    throw new Error(`REQUEST_TIMEOUT_MS (${requestTimeout}) must be 0 or at least HEADERS_TIMEOUT_MS (${headersTimeout})`)
  }
  return {
    requestTimeout,
    // An HTTP/2 stream has no head timeout in Node: a session without any traffic is closed after
    // this, and the proxy bounds each session to 100 streams (docs/http2.md, "Slow clients").
    http2SessionTimeout: integer(env, 'H2_SESSION_TIMEOUT_MS', 30_000, 1),
    http: { headersTimeout, requestTimeout, connectionsCheckingInterval: 1000 }
  }
}

/**
 * HTTPS=1 serves HTTPS with HTTP/2 and an HTTP/1.1 fallback on the ingress port (the demo
 * services stay plain HTTP/1.1). Without TLS_KEY_FILE and TLS_CERT_FILE a self-signed certificate
 * is made at start (tls.js). `h2WebSocket` (H2_WEBSOCKET, on unless 0) advertises RFC 8441
 * extended CONNECT, so that a browser opens its WebSockets as streams of the page's HTTP/2
 * connection; off, it opens them with an HTTP/1.1 upgrade on a connection of their own.
 * `false` when HTTPS is off.
 */
function httpsOptions (env) {
  const on = flag(env, 'HTTPS')
  const keyFile = env.TLS_KEY_FILE || undefined
  const certFile = env.TLS_CERT_FILE || undefined
  if (!keyFile !== !certFile) throw new Error('TLS_KEY_FILE and TLS_CERT_FILE go together: give both or neither')
  // Silently serving plain HTTP with a certificate configured would surprise whoever set it.
  if (keyFile && !on) throw new Error('TLS_KEY_FILE and TLS_CERT_FILE are used with HTTPS=1 only')
  const h2WebSocket = flag(env, 'H2_WEBSOCKET', true)
  // Likewise: WebSockets over HTTP/2 asked for, but no HTTP/2 to carry them.
  if (env.H2_WEBSOCKET === '1' && !on) throw new Error('H2_WEBSOCKET=1 is used with HTTPS=1 only')
  return on && { keyFile, certFile, h2WebSocket }
}

function hostName (env, name) {
  const raw = env[name]
  if (raw === undefined || raw === '') return null
  if (!HOST_NAME.test(raw)) throw new Error(`${name} must be a host name, got "${raw}"`)
  return raw
}

function flag (env, name, fallback = false) {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  if (raw === '0') return false
  if (raw === '1') return true
  throw new Error(`${name} must be 1 or 0, got "${raw}"`)
}

function integer (env, name, fallback, min, max = Number.MAX_SAFE_INTEGER) {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}, got "${raw}"`)
  }
  return value
}
