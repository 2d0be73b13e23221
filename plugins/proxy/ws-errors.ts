import createError from '@fastify/error'

// WebSocket pass-through errors. Their bodies go out through lib/error-body.ts: a stable
// code, no stack, never the upstream's address.

/** A request that asks for an upgrade this proxy will not tunnel (POST, h2c, unknown token, a body). */
export const InvalidUpgradeError = createError(
  'FST_STREAMLINE_WS_INVALID_UPGRADE',
  'Only a GET WebSocket upgrade without a body can be proxied',
  400, Error, false
)

/** The upstream could not be reached (refused, reset, DNS) before it answered the handshake. */
export const UpstreamUnavailableError = createError(
  'FST_STREAMLINE_WS_UPSTREAM_UNAVAILABLE',
  'The upstream could not be reached',
  502, Error, false
)

/** The upstream sent a 101 for another protocol, or a malformed handshake answer. */
export const BadUpstreamUpgradeError = createError(
  'FST_STREAMLINE_WS_BAD_UPSTREAM_UPGRADE',
  'The upstream answered the upgrade with an invalid response',
  502, Error, false
)

/** The upstream did not answer the handshake in time (only when no request deadline covers it). */
export const HandshakeTimeoutError = createError(
  'FST_STREAMLINE_WS_HANDSHAKE_TIMEOUT',
  'The upstream did not answer the WebSocket handshake in time',
  504, Error, false
)

export const InvalidWebSocketOptionError = createError<[string, string]>(
  'FST_STREAMLINE_INVALID_OPTION',
  'Invalid proxy option %s: %s',
  500, TypeError
)
