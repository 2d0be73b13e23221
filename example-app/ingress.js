// The ingress: one Fastify app with the deadline on every route, two proxied services, an
// auth hook on one prefix, one in-app SSE route, the demo page and its settings route.
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import fastifyStatic from '@fastify/static'
import { deadline, proxy } from 'fastify-streamline'
import { metricsRoutes } from './metrics.js'
import { readConfig } from './config.js'
import { loadCertificate } from './tls.js'
import { clientErrorHandler } from './client-errors.js'
import { replicaRoutes } from './replicas.js'

// The demo's bearer token; the page sends it from its "with token" button.
const DEMO_TOKEN = 'demo-token'
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' }
// The live pool, tuned so that the page shows ejection and return within seconds: 3 failures in
// a row eject a replica for 5 s (10 s the next time...), usually before the health check, every
// 5 s, takes a stopped replica out after two misses; it is back after two passes. (Defaults:
// docs/pools.md.)
const LIVE_POOL = {
  outlierDetection: { consecutiveFailures: 3, baseEjection: 5000, maxEjection: 20_000 },
  healthCheck: { path: '/healthz', interval: 5000, timeout: 1000 }
}
// A stopped replica ends its tickers cleanly (upstream/live.js), and a ticker never ends by itself:
// 'any-end' resumes those clean ends too, from another replica, with Last-Event-ID.
const LIVE_RESUME = { resumeOn: 'any-end' }

/**
 * The whole ingress, not listening yet. Without arguments (as in the README's `node:cluster`
 * recipe) it reads the environment and expects the demo services on their ports (LIVE_PORT,
 * FILES_PORT), e.g. started by `npm start` in another terminal, or, with UPSTREAM_DNS, at every
 * address of that name (the Kubernetes manifests' headless Service). With HTTPS=1 it serves HTTP/2
 * and HTTP/1.1 over TLS, with `certificate` (from tls.js) or one loaded or made here.
 */
export async function buildIngress (config = readConfig(), upstreams = demoServices(config), certificate = null) {
  if (config.https && !certificate) certificate = await loadCertificate(config.https)
  // config.server: limits for slow clients (header and request timeouts), see config.js.
  const app = Fastify({ logger: { level: config.logLevel }, clientErrorHandler, ...config.server, ...tlsOptions(certificate, config.https || {}) })
  if (certificate) limitHttp1Fallback(app, config.server)
  // On close(), proxied event streams end at an event boundary and downloads get this long.
  const drainTimeout = config.drainTimeoutMs

  // First, so that it covers every route registered after it (proxied ones included).
  await app.register(deadline, config.deadline)

  // A route that opts out: it answers from memory, a deadline would only cost.
  app.get('/api/settings', { config: { deadline: false } }, async () => publicSettings(config, upstreams))
  readiness(app)

  const clocks = new Set()
  // In-app SSE in streaming mode: its first event comes after CLOCK_DELAY_MS (3 s by default),
  // later than the 2 s timeout, which would otherwise answer 504 before the stream starts.
  app.get('/events/clock', { config: { deadline: { streaming: true } } }, (request, reply) => {
    clockStream(request, reply, clocks, config.clockDelayMs)
  })
  app.addHook('preClose', async () => {
    for (const res of clocks) res.end()
  })

  await app.register(fastifyStatic, { root: fileURLToPath(new URL('./public/', import.meta.url)) })
  await app.register(metricsRoutes, { replicaNames: upstreams.live.replicas?.names ?? [] })
  // The page's stop and start buttons, answered on loopback only (replicas.js).
  if (upstreams.live.replicas) await app.register(replicaRoutes, { replicas: upstreams.live.replicas })

  // Prefix routing to two services. /live carries SSE and WebSocket upgrades, and is a pool.
  // Via tells the live service which protocol reached the ingress, for the page to show it.
  await app.register(proxy, {
    ...upstreamOptions(upstreams.live, LIVE_POOL),
    prefix: '/live',
    rewritePrefix: '',
    websocket: true,
    drainTimeout,
    rewriteRequestHeaders: addVia,
    sseResume: config.sseResume && LIVE_RESUME
  })
  await app.register(proxy, { ...upstreamOptions(upstreams.files), prefix: '/files', rewritePrefix: '', drainTimeout })
  // Same service, guarded prefix: the hook answers 401 before any upstream contact.
  await app.register(proxy, {
    ...upstreamOptions(upstreams.files),
    prefix: '/private',
    rewritePrefix: '/private',
    preHandler: requireToken(DEMO_TOKEN),
    drainTimeout
  })

  return app
}

// ALPN picks HTTP/2 for browsers and curl; HTTP/1.1 clients still get served on the same port.
// enableConnectProtocol advertises RFC 8441 extended CONNECT: a browser then opens a WebSocket
// as a stream of its HTTP/2 connection, which the /live proxy (websocket: true) accepts; without
// it, the browser upgrades an HTTP/1.1 connection of its own. Without `https` config (a caller
// passing a certificate only), WebSockets over HTTP/2 are on, as with HTTPS=1.
function tlsOptions (certificate, { h2WebSocket = true } = {}) {
  if (!certificate) return {}
  const settings = { enableConnectProtocol: h2WebSocket }
  return { http2: true, https: { allowHTTP1: true, key: certificate.key, cert: certificate.cert, settings } }
}

// With `https`, Fastify creates an http2 server and ignores `http`, `requestTimeout` and
// `keepAliveTimeout` (fastify/lib/server.js), leaving Node's HTTP/1.1 fallback at its defaults:
// 60 s for a head, checked every 30 s, and idle keep-alive connections kept forever. The
// fallback reads these as server properties, the checking interval from 'listening' on.
// (HTTP/2 sessions are closed after Fastify's http2SessionTimeout of inactivity instead.)
function limitHttp1Fallback (app, { http }) {
  Object.assign(app.server, http, { keepAliveTimeout: app.initialConfig.keepAliveTimeout })
}

// A load balancer's (or Kubernetes') readiness check: 503 once `app.unready()` was called (on
// SIGTERM, before the drain: kubernetes/ingress.js), or once close() started.
function readiness (app) {
  let ready = true
  app.get('/ready', { config: { deadline: false } }, async (request, reply) =>
    ready ? { ready } : reply.code(503).send({ ready }))
  app.decorate('unready', () => { ready = false })
  app.addHook('preClose', async () => { ready = false })
}

function demoServices (config) {
  const host = config.upstreamDns ?? config.host
  const dns = config.upstreamDns !== null
  return {
    live: { url: `http://${host}:${config.livePort}`, dns },
    files: { url: `http://${host}:${config.filesPort}`, dns }
  }
}

/** A service's proxy options: its replicas given (npm start), its name resolved (UPSTREAM_DNS), or one URL. */
function upstreamOptions (service, pool = {}) {
  if (service.replicas) return { upstream: service.replicas.urls, ...pool }
  // Every address of the name is a replica, asked again every 5 s; the Host header keeps the name.
  if (service.dns) return { upstream: service.url, resolve: { dns: true, interval: 5000 }, ...pool }
  return { upstream: service.url }
}

function publicSettings (config, upstreams) {
  return {
    deadline: { ...config.deadline, statusCode: 504 },
    routes: {
      '/live/*': 'live service (SSE ticker, WebSocket chat, /whoami), proxied to a pool of replicas',
      '/files/*': 'files service (download, slow), proxied',
      '/private/*': 'files service behind a bearer-token hook, proxied',
      '/events/clock': 'in-app SSE, streaming mode',
      '/api/settings': 'this route, deadline opted out'
    },
    demo: {
      tickMs: config.tickMs,
      clockDelayMs: config.clockDelayMs,
      slowMs: config.slowMs,
      downloadMb: config.downloadMb,
      downloadMbPerS: config.downloadMbPerS,
      sseResume: config.sseResume,
      // The replicas card's buttons: only when this process started the replicas (npm start).
      replicaControls: Boolean(upstreams.live.replicas)
    }
  }
}

function clockStream (request, reply, clocks, delayMs) {
  reply.hijack()
  const res = reply.raw
  const httpVersion = request.raw.httpVersion
  let n = 0
  const send = () => {
    if (!res.headersSent) res.writeHead(200, SSE_HEADERS)
    n += 1
    res.write(`id: ${n}\nevent: clock\ndata: ${JSON.stringify({ n, serverTime: new Date().toISOString(), httpVersion })}\n\n`)
  }
  let timer = setTimeout(() => {
    send()
    timer = setInterval(send, 5000)
  }, delayMs)
  clocks.add(res)
  res.once('close', () => {
    clearTimeout(timer) // also clears an interval: Node shares one timer type
    clocks.delete(res)
  })
}

// RFC 9110 Via: the protocol version this hop received ("2" or "1.1"), after any earlier hops'.
function addVia (request, headers) {
  const hop = `${request.raw.httpVersion === '2.0' ? '2' : request.raw.httpVersion} streamline-example`
  return { ...headers, via: headers.via ? `${headers.via}, ${hop}` : hop }
}

function requireToken (token) {
  const expected = `Bearer ${token}`
  return async function checkToken (request, reply) {
    if (request.headers.authorization === expected) return
    reply.code(401).header('www-authenticate', 'Bearer realm="demo"').send({
      statusCode: 401,
      code: 'DEMO_UNAUTHORIZED',
      error: 'Unauthorized',
      message: 'this prefix needs "Authorization: Bearer demo-token"'
    })
    return reply
  }
}
