// The named import (not the default one): declarations emitted from it name
// `FastifyErrorConstructor` by its module, so they compile under every moduleResolution.
import { createError, type FastifyError } from '@fastify/error'

// Every error this plugin produces. Errors answered to clients carry fixed messages:
// no upstream address, no stack (captureStackTrace false: they describe a fact about
// the request or the upstream, not a code location).

/** A registration option is wrong: thrown by `app.register(proxy, options)`. */
export const InvalidProxyOptionError = createError<[string, string]>(
  'FST_STREAMLINE_PROXY_INVALID_OPTION',
  'Invalid proxy option %s: %s',
  500, TypeError
)

/** The request path tries to leave the prefix or cannot be mapped safely. */
export const BadPathError = createError<[string]>(
  'FST_STREAMLINE_PROXY_BAD_PATH',
  'Request path not allowed: %s',
  400, Error, false
)

/** The raw request target does not start with the route's prefix (e.g. it only matched after decoding). */
export const PathNotFoundError = createError(
  'FST_STREAMLINE_PROXY_NOT_FOUND',
  'No upstream for this path',
  404, Error, false
)

/** An `upstream` function returned something that is not an http(s) URL: a configuration fault. */
export const InvalidUpstreamError = createError(
  'FST_STREAMLINE_PROXY_INVALID_UPSTREAM',
  'The upstream for this request is not a valid http(s) URL',
  500, Error, false
)

/** Connection refused/reset, DNS failure, or the upstream closed before answering. */
export const UpstreamUnavailableError = createError(
  'FST_STREAMLINE_UPSTREAM_UNAVAILABLE',
  'The upstream service is unavailable',
  502, Error, false
)

/** Every replica of the upstream's pool left the set (or none was resolved yet). */
export const NoReplicaError = createError(
  'FST_STREAMLINE_UPSTREAM_NO_REPLICA',
  'No replica of the upstream service is available',
  503, Error, false
)

/** The upstream did not connect or send its response head in time. */
export const UpstreamTimeoutError = createError(
  'FST_STREAMLINE_UPSTREAM_TIMEOUT',
  'The upstream service did not answer in time',
  504, Error, false
)

/** Bad status line, bad header bytes, out-of-range status code. */
export const UpstreamBadResponseError = createError(
  'FST_STREAMLINE_UPSTREAM_BAD_RESPONSE',
  'The upstream service sent an invalid response',
  502, Error, false
)

/** The upstream's TLS certificate was not accepted. */
export const UpstreamTlsError = createError(
  'FST_STREAMLINE_UPSTREAM_TLS',
  'The upstream service presented a certificate that could not be verified',
  502, Error, false
)

/** Any other failure talking to the upstream: still the upstream's side, so never a 500. */
export const UpstreamError = createError(
  'FST_STREAMLINE_UPSTREAM_ERROR',
  'The upstream request failed',
  502, Error, false
)

/** An HTTP/2 upstream's response ended while the proxy could not take all of it (upstream/grpc-body.ts): cut, not passed short. */
export const UpstreamTruncatedError = createError(
  'FST_STREAMLINE_UPSTREAM_TRUNCATED',
  'The upstream response ended while part of its body could not be relayed',
  502, Error, false
)

/** A request that asks for an upgrade this proxy will not tunnel (POST, h2c, unknown token, a body). */
export const InvalidUpgradeError = createError(
  'FST_STREAMLINE_PROXY_INVALID_UPGRADE',
  'Only a GET WebSocket upgrade over HTTP/1.1 without a body can be proxied',
  400, Error, false
)

/** `app.close()` began before a WebSocket upgrade got its answer (its hooks still running, or the upstream's 101 not yet in). */
export const ShuttingDownError = createError(
  'FST_STREAMLINE_PROXY_SHUTTING_DOWN',
  'The proxy is shutting down',
  503, Error, false
)

/** An HTTP/2 CONNECT that is not a WebSocket (a plain tunnel request, another `:protocol`). */
export const ConnectNotAllowedError = createError(
  'FST_STREAMLINE_PROXY_CONNECT_NOT_ALLOWED',
  'CONNECT is only accepted as an HTTP/2 WebSocket (extended CONNECT with :protocol websocket)',
  405, Error, false
)

/** A gRPC stream that was to end with a status of ours, but whose message in flight never became whole: cut. */
export const HalfMessageError = createError(
  'FST_STREAMLINE_GRPC_HALF_MESSAGE',
  'gRPC stream cut: its message in flight did not complete in time to end it with a status',
  504, Error, false
)

/** Whether `err` is one of this plugin's errors (answered as JSON), not one a user's function threw. */
export function isProxyError (err: unknown): err is FastifyError {
  return String((err as { code?: unknown } | null)?.code).startsWith('FST_STREAMLINE_PROXY_')
}
