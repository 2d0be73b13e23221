import type { FastifyRequest } from 'fastify'
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http'
import { deadlineHeaders } from '../../deadline/index.js'
import { setForwardedHeaders } from '../forwarded.js'
import { stripRequestOnly, withoutHopByHop } from '../hop-by-hop.js'
import type { RequestHeaderRewrite, ResponseHeaderRewrite, UpstreamRequestHeaders } from '../types.js'

/**
 * The handshake for the upstream: every end-to-end header (Origin, Cookie, Authorization,
 * all Sec-WebSocket-*) as the client sent it, hop-by-hop ones removed like for plain HTTP,
 * then this hop's own: Host, Connection/Upgrade, X-Forwarded-*, the remaining budget, and
 * finally the user's rewriteRequestHeaders, as for plain HTTP.
 */
export function handshakeHeaders (request: FastifyRequest, target: URL, rewrite: RequestHeaderRewrite | null): UpstreamRequestHeaders {
  return upstreamHandshake(request, request.headers as UpstreamRequestHeaders, request.headers.upgrade, target, rewrite)
}

/**
 * The HTTP/1.1 handshake for an HTTP/2 extended CONNECT: the same, from the client's headers
 * without the pseudo-headers (`:protocol` becomes `Upgrade: websocket`, `:authority` the
 * X-Forwarded-Host), with the proxy's own key.
 */
export function extendedConnectHeaders (request: FastifyRequest, target: URL, rewrite: RequestHeaderRewrite | null, key: string): UpstreamRequestHeaders {
  const received: UpstreamRequestHeaders = {}
  for (const name in request.headers) {
    if (name.charCodeAt(0) !== 0x3a) received[name] = request.headers[name]
  }
  received['sec-websocket-key'] = key
  return upstreamHandshake(request, received, 'websocket', target, rewrite)
}

function upstreamHandshake (request: FastifyRequest, received: UpstreamRequestHeaders, upgrade: string | undefined, target: URL, rewrite: RequestHeaderRewrite | null): UpstreamRequestHeaders {
  // Hop-by-hop removal first, so a client `Connection: x-forwarded-for` cannot remove ours.
  const headers = withoutHopByHop(received, false)
  stripRequestOnly(headers, false)
  headers.host = target.host
  headers.connection = 'Upgrade'
  headers.upgrade = upgrade
  setForwardedHeaders(request, headers)
  Object.assign(headers, deadlineHeaders(request))
  return rewrite === null ? headers : rewrite(request, headers)
}

/** A refused handshake's response headers, as plain HTTP would relay them. */
export function refusalHeaders (res: IncomingMessage, request: FastifyRequest, rewrite: ResponseHeaderRewrite | null): OutgoingHttpHeaders {
  const headers = withoutHopByHop(res.headers as OutgoingHttpHeaders, false)
  return rewrite === null ? headers : rewrite(headers, request)
}
