// Every knob of the example comes from the environment, with the defaults the README lists.
// Port 0 picks a free port; the ports actually used are printed at start.

const HOST = '127.0.0.1'

/** Reads the example's settings; throws a clear message for a malformed value. */
export function readConfig (env = process.env) {
  return {
    host: HOST,
    ingressPort: integer(env, 'INGRESS_PORT', 3000, 0, 65535),
    livePort: integer(env, 'LIVE_PORT', 3001, 0, 65535),
    filesPort: integer(env, 'FILES_PORT', 3002, 0, 65535),
    deadline: {
      timeout: integer(env, 'DEADLINE_TIMEOUT_MS', 2000, 1),
      streamIdleTimeout: integer(env, 'STREAM_IDLE_TIMEOUT_MS', 15000, 0),
      maxStreamDuration: integer(env, 'MAX_STREAM_DURATION_MS', 0, 0)
    },
    server: serverOptions(env),
    tickMs: integer(env, 'TICK_MS', 1000, 10),
    clockDelayMs: integer(env, 'CLOCK_DELAY_MS', 3000, 0),
    slowMs: integer(env, 'SLOW_MS', 5000, 0),
    downloadMb: integer(env, 'DOWNLOAD_MB', 256, 1, 4096),
    // The proxy's drainTimeout: inside close-with-grace's 10 s in start.js, with room to spare.
    drainTimeoutMs: integer(env, 'DRAIN_TIMEOUT_MS', 5000, 0, 8000),
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
    http: { headersTimeout, requestTimeout, connectionsCheckingInterval: 1000 }
  }
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
