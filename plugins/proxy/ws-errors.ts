import createError from '@fastify/error'

// The one error of the WebSocket pass-through that plain HTTP cannot have; upstream faults
// reuse errors.ts (same codes as plain HTTP). Kept apart because errors.ts belongs to the
// HTTP proxy's owner; it can move there.

/** A request that asks for an upgrade this proxy will not tunnel (POST, h2c, unknown token, a body). */
export const InvalidUpgradeError = createError(
  'FST_STREAMLINE_PROXY_INVALID_UPGRADE',
  'Only a GET WebSocket upgrade over HTTP/1.1 without a body can be proxied',
  400, Error, false
)
