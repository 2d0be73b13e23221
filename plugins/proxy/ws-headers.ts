import type { FastifyRequest } from 'fastify'
import type { IncomingHttpHeaders } from 'node:http'
import { deadlineHeaders } from '../deadline/index.js'

// RFC 9110 7.6.1 hop-by-hop fields, plus the legacy ones proxies still see. `Upgrade` and
// `Connection` are re-added for the upstream hop below.
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade'
])
// Replaced, not appended: the proxy states them for its own hop.
const REPLACED = new Set(['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'])

/**
 * The handshake for the upstream, as a raw header list so duplicates, order and case survive
 * (several `Sec-WebSocket-Protocol` or `Cookie` lines stay as the client sent them). Every
 * end-to-end header passes: Origin, Cookie, Authorization, all Sec-WebSocket-*.
 */
export function handshakeHeaders (request: FastifyRequest, target: URL): string[] {
  const raw = request.raw.rawHeaders
  const dropped = connectionListed(request.headers)
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    if (HOP_BY_HOP.has(name) || REPLACED.has(name) || dropped.has(name)) continue
    out.push(raw[i], raw[i + 1])
  }
  out.push('Host', target.host)
  out.push('Connection', 'Upgrade', 'Upgrade', String(request.headers.upgrade))
  out.push(...forwardedHeaders(request))
  for (const [name, value] of Object.entries(deadlineHeaders(request))) out.push(name, value)
  return out
}

/** Names a `Connection` header lists are hop-by-hop too (RFC 9110 7.6.1). */
export function connectionListed (headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection
  if (value === undefined) return new Set()
  return new Set(value.toLowerCase().split(',').map(token => token.trim()).filter(token => token !== ''))
}

/**
 * X-Forwarded-For/-Proto/-Host for this hop. Incoming values survive only as far as
 * Fastify's `trustProxy` trusts the peer: `request.ips` is the socket address followed by
 * the trusted part of the incoming chain, nearest first.
 */
function forwardedHeaders (request: FastifyRequest): string[] {
  const chain = request.ips !== undefined && request.ips.length > 0
    ? [...request.ips].reverse()
    : [request.socket.remoteAddress ?? '']
  return [
    'X-Forwarded-For', chain.join(', '),
    'X-Forwarded-Proto', request.protocol,
    'X-Forwarded-Host', request.host
  ]
}

/** A response's raw header list without hop-by-hop fields, for relaying a refused handshake. */
export function endToEndResponseHeaders (rawHeaders: string[], headers: IncomingHttpHeaders): string[] {
  const dropped = connectionListed(headers)
  const out: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase()
    if (HOP_BY_HOP.has(name) || dropped.has(name)) continue
    out.push(rawHeaders[i], rawHeaders[i + 1])
  }
  return out
}
