import type { FastifyReply, FastifyRequest, HTTPMethods, onRequestHookHandler, preHandlerHookHandler, preValidationHookHandler, FastifyContextConfig } from 'fastify'
import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import type { OutgoingHttpHeaders } from 'node:http'
import type { Dispatcher } from 'undici'
import type { UpstreamOption } from './target.js'
import type { WebSocketTimingOptions } from './websocket/options.js'

export type { UpstreamOption } from './target.js'

/** Request headers as they will be sent upstream (undefined values are not sent). */
export type UpstreamRequestHeaders = Record<string, string | string[] | number | undefined>

/** The `rewriteRequestHeaders` option: the headers to send upstream, for plain requests and WebSocket handshakes alike. */
export type RequestHeaderRewrite = (request: FastifyRequest, headers: UpstreamRequestHeaders) => UpstreamRequestHeaders

/** The `rewriteHeaders` option: the response headers to send to the client. */
export type ResponseHeaderRewrite = (headers: OutgoingHttpHeaders, request: FastifyRequest) => OutgoingHttpHeaders

/** One replica of a pool: its URL, and its share of the traffic (default 1). */
export type ReplicaOption = string | { url: string, weight?: number }

/** The `resolve` option: where a pool's replica set comes from while running. */
export type ResolveOption = (() => Promise<ReplicaOption[]>) |
{ dns: true, interval?: number } |
{ replicas: () => Promise<ReplicaOption[]>, interval?: number }

/** The `balance` option; `hash` keeps a key (a user, a session) on one replica while it is there. */
export type BalanceOption = 'least-request' | 'round-robin' | 'random' | { hash: (request: FastifyRequest) => string }

/** Passive health (Envoy's outlier detection). */
export interface OutlierDetectionOptions {
  /** Failures in a row (no connection, reset or timeout before the head, 502/503/504) that eject a replica. Default 5. */
  consecutiveFailures?: number
  /** ms of the first ejection; the n-th lasts n times this. Default 30000. */
  baseEjection?: number
  /** Longest ejection, ms. Default 300000. */
  maxEjection?: number
  /** Most of a pool ejected at once, in percent (at least one replica). Default 50. */
  maxEjectionPercent?: number
}

/** Active health checks. */
export interface HealthCheckOptions {
  /** Path checked with a GET, e.g. '/healthz'; a 2xx answer passes. */
  path: string
  /** ms between two rounds. Default 10000. */
  interval?: number
  /** ms a check may take. Default 2000. */
  timeout?: number
  /** Passing checks in a row that bring a replica back. Default 2. */
  healthyThreshold?: number
  /** Failing checks in a row that take it out. Default 2. */
  unhealthyThreshold?: number
}

/** Options of `app.register(proxy, options)`. Every time is in milliseconds. */
export interface ProxyOptions extends WebSocketTimingOptions {
  /**
   * Upstream base URL (http: or https:), or a function choosing one per request. Required, except
   * beside `wsUpstream` with `websocket: true`: plain requests then go to that host over http(s).
   */
  upstream?: UpstreamOption | ReplicaOption[]
  /**
   * Keep a pool's replica set current while running: `{ dns: true }` expands each host name of
   * `upstream` into all its addresses; a function (or `{ replicas }`) returns the replicas. Asked
   * before the server serves, then every `interval` (default 10000 ms).
   */
  resolve?: ResolveOption
  /** How a pool picks a replica. Default 'least-request' (power of two choices over in-flight work, weighted). */
  balance?: BalanceOption
  /** A pool's passive health: replicas that fail in a row are ejected for a while. `false`: off. */
  outlierDetection?: OutlierDetectionOptions | false
  /** A pool's active health check: a GET to each replica every `interval`. Default: none. */
  healthCheck?: HealthCheckOptions
  /** A pool's request bodies up to this size (bytes) are held to be sent again on failover. Default 65536. */
  retryBodyLimit?: number
  /** A pool sends POST and PATCH again after a reset or a 502/503/504 (they may have been applied). Default false. */
  retryNonIdempotent?: boolean
  /** Path prefix this registration serves; may contain `:params`. Default '/'. */
  prefix?: string
  /** Path put in place of the prefix upstream (after the upstream URL's own path); may use the prefix's `:params`. Default ''. */
  rewritePrefix?: string
  /** Methods proxied. Default: DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT. */
  httpMethods?: HTTPMethods[]
  /** Route hooks, e.g. authentication; they run before any upstream contact. */
  onRequest?: onRequestHookHandler | onRequestHookHandler[]
  preValidation?: preValidationHookHandler | preValidationHookHandler[]
  preHandler?: preHandlerHookHandler | preHandlerHookHandler[]
  /** Route `config` (e.g. `{ deadline: { timeout: 5000 } }`). */
  config?: FastifyContextConfig
  /** Change the headers sent upstream. Runs after hop-by-hop removal and X-Forwarded-* are applied. */
  rewriteRequestHeaders?: RequestHeaderRewrite
  /** Change the response headers sent to the client. Runs after hop-by-hop removal. */
  rewriteHeaders?: ResponseHeaderRewrite
  /** Extra options for `reply.from` (only those the proxy does not manage itself). */
  replyOptions?: ProxyReplyOptions
  /** Max connections per upstream origin; `null` = one per concurrent request, reused with keep-alive. Default null. */
  connections?: number | null
  /** Idle keep-alive connections to the upstream are closed after this. Default 4000. */
  keepAliveTimeout?: number
  /** Time to open a connection (TCP + TLS) to the upstream; 504 when it passes. Default 10000. */
  connectTimeout?: number
  /**
   * HTTP/2 to the upstream (gRPC): over http:// with prior knowledge (h2c), over https:// offered
   * by ALPN (an HTTP/1.1-only upstream still works). Default false (HTTP/1.1).
   */
  http2?: boolean
  /**
   * Time for the upstream's response head; 504 when it passes. 0 = none.
   * Default: 0 when the deadline plugin is registered (its `timeout` rules), else 60000.
   */
  headersTimeout?: number
  /**
   * Longest silence between two body chunks from the upstream; the client connection is cut when it passes. 0 = none.
   * Default: 0 when the deadline plugin is registered (its `streamIdleTimeout` rules), else 300000 (5 minutes).
   */
  bodyTimeout?: number
  /** Upstream TLS. Certificates are verified unless `rejectUnauthorized: false` is given explicitly. */
  tls?: ProxyTlsOptions
  /**
   * One upstream: retries for GET/HEAD/OPTIONS/TRACE requests without a body, after a connection
   * failure or a 503, while the deadline leaves time for the wait. Default 0.
   * A pool: failover attempts on other replicas (docs/pools.md). Default 2.
   */
  retries?: number
  /**
   * Pass WebSocket upgrades under the prefix through to the upstream: the handshake is
   * forwarded, the upstream's 101 relayed, then bytes are piped both ways. Default false.
   */
  websocket?: boolean
  /** Upstream for WebSocket upgrades (ws:, wss:, http:, https:), same forms as `upstream`. Default: `upstream`. */
  wsUpstream?: UpstreamOption
  /**
   * Add `Server-Timing: upstream;dur=<ms to the upstream's head>` (and `budget;dur=<ms of
   * deadline left>` when the request has one) after any the upstream sent. Default false.
   */
  serverTiming?: boolean
  /**
   * On a proxied `text/event-stream` response silent this long (ms), write a comment block
   * (`:\n\n`) between two events, so that intermediaries do not cut a quiet stream. Never before
   * the upstream's first byte, inside an event, with a `Content-Encoding`, or to a client that is
   * not reading; not activity for the deadline's `streamIdleTimeout`. 0 = off. Default 0.
   */
  sseHeartbeat?: number
  /**
   * Resume a proxied `text/event-stream` (GET or another idempotent method) that its upstream
   * cuts: a new upstream request with `Last-Event-ID` (the last id relayed), to another replica
   * when the pool has one, relayed into the same client response (docs/resume.md). `true`: the
   * defaults. Also as the routes' `config.sseResume`, which wins. Default off.
   */
  sseResume?: boolean | SseResumeOptions
  /**
   * Resume a proxied GET download its upstream cuts mid-body, when its response had a strong
   * `ETag`, `Accept-Ranges: bytes` and a known length: `Range: bytes=N-` with `If-Match`, and
   * only a matching `206` continues the body (docs/resume.md). Also as `config.resumeDownloads`. Default off.
   */
  resumeDownloads?: boolean | { attempts?: number, gap?: number }
  /**
   * On `app.close()`, how long open proxied responses (downloads, slow answers) may take to
   * finish before every connection still open on the server is cut; with several registrations
   * the longest applies. Event streams end at once, at an event boundary. Default 10000.
   */
  drainTimeout?: number
  /**
   * The `retry:` field (ms) written to a proxied event stream before a drain ends it, so that
   * `EventSource` clients reconnect (to another replica) after that delay. `false`: none. Default 1000.
   */
  drainRetry?: number | false
  // ---- @fastify/http-proxy compatibility (see README "Switching from @fastify/http-proxy") ----
  /** Fastify route constraints of the proxy's routes, e.g. `{ host: 'api.example.com' }`. */
  constraints?: Record<string, unknown>
  /** Route paths under the prefix that are proxied. Default `['/', '/*']`. */
  routes?: string[]
  /** Rewrites the request URL (path and query) before the prefix mapping; the result passes the same path checks. */
  preRewrite?: (url: string, params: unknown, prefix: string) => string
  /**
   * Replaces the proxy's own `reply.from(dest, options)` call: `dest` is the upstream path, `options`
   * carry the proxy's wiring (cancellation, timers, header rules) and must be passed on to `reply.from`.
   */
  handler?: (request: FastifyRequest, reply: FastifyReply, dest: string, options: FastifyReplyFromHooks) => unknown
  /** reply-from's name for `upstream`. */
  base?: string
  /** @fastify/http-proxy's older name for `preHandler`. */
  beforeHandler?: preHandlerHookHandler | preHandlerHookHandler[]
  /** undici Agent options (mapped onto ours; conflicting values are refused), `true`, or an undici Dispatcher. */
  undici?: boolean | Record<string, unknown> | Dispatcher
  /** false: bodies are parsed by the app's content type parsers and re-sent (JSON re-encoded). Default true. */
  proxyPayloads?: boolean
  /** A Location / Content-Location into the upstream's rewritten prefix comes back under the proxy's prefix. Default true. */
  internalRewriteLocationHeader?: boolean
  /** Methods retried (without a body) when `retries` > 0. Default GET, HEAD, OPTIONS, TRACE. */
  retryMethods?: string[]
  /** An alias of `retries`. */
  maxRetriesOn503?: number
  /** reply-from: content types JSON-encoded when a parsed body is re-sent (`proxyPayloads: false`). */
  contentTypesToEncode?: string[]
  /** Accepted for compatibility; they change nothing for a streaming proxy. */
  disableCache?: boolean
  cacheURLs?: number
  disableRequestLogging?: boolean
  /**
   * @fastify/http-proxy's options for its upstream WebSocket client; what still means something on a
   * byte tunnel applies to the upstream handshake: `headers` (added), `rewriteRequestHeaders(headers,
   * request)` (gets a copy of `headers`, returns those to add), `queryString` (object or function,
   * replaces the query), TLS options (join `tls`), `handshakeTimeout` (is `wsHandshakeTimeout`). Any
   * other key (frame-level: `perMessageDeflate`, `maxPayload`...) is ignored, named in one warn line.
   */
  wsClientOptions?: Record<string, unknown>
  wsServerOptions?: Record<string, unknown>
}

export interface ProxyTlsOptions {
  /** Verify the upstream certificate. Default true; `false` is insecure and must be chosen explicitly. */
  rejectUnauthorized?: boolean
  /** Extra trusted CA certificates (PEM). */
  ca?: string | Buffer | Array<string | Buffer>
  /** SNI / certificate name to verify, when it differs from the upstream host. */
  servername?: string
}

/** The `reply.from` options a user may still set; the others are managed by the proxy. */
export type ProxyReplyOptions = Pick<FastifyReplyFromHooks, 'queryString' | 'method' | 'contentType' | 'onResponse' | 'onError' |
'rewriteHeaders' | 'rewriteRequestHeaders' | 'getUpstream' | 'retriesCount' | 'body'> & { maxRetriesOn503?: number }

declare module 'fastify' {
  interface FastifyReply {
    /**
     * @fastify/http-proxy's decorator, on a proxy registration's routes: the upstream path (with
     * query) for `url` and the options that make `reply.from(url, options)` behave like the proxy.
     * `prefix` (default '/') is stripped and replaced by `rewritePrefix`; a `url` that does not start
     * with it is sent unchanged. Throws FST_STREAMLINE_PROXY_BAD_PATH (400) as the proxy's routes answer.
     */
    fromParameters: (url: string, params?: Record<string, unknown>, prefix?: string) => { url: string, options: FastifyReplyFromHooks }
  }
  interface FastifyContextConfig {
    /** A proxy registration's routes: `sseResume` for them, over the registration's option (docs/resume.md). */
    sseResume?: boolean | SseResumeOptions
    /** A proxy registration's routes: `resumeDownloads` for them (docs/resume.md). */
    resumeDownloads?: boolean | { attempts?: number, gap?: number }
  }
}

/** `sseResume`: how a cut event stream is resumed. */
export interface SseResumeOptions {
  /** Resume requests per cut (reset once an event is relayed). Default 3. */
  attempts?: number
  /** ms from the cut to the resumed stream's head, all attempts included. Default 5000. */
  gap?: number
  /** 'error' (default): only an abnormal end is resumed; 'any-end': a clean end too. */
  resumeOn?: 'error' | 'any-end'
}
