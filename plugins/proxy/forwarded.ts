import type { FastifyRequest } from 'fastify'

// X-Forwarded-For/-Proto/-Host for the upstream. What the client claims is kept only as far
// as Fastify's `trustProxy` trusts the hops: `request.ips` (present only when trustProxy is
// set) is the socket peer followed by the X-Forwarded-For entries, right to left, cut after
// the first untrusted address; reversed, it is exactly the chain the upstream may believe.
// `request.protocol` and `request.host` already apply trustProxy the same way.

type Headers = Record<string, unknown>

export function setForwardedHeaders (request: FastifyRequest, headers: Headers): void {
  const chain = request.ips
  headers['x-forwarded-for'] = chain === undefined || chain.length === 0
    ? request.socket.remoteAddress
    : chain.slice().reverse().join(', ')
  headers['x-forwarded-proto'] = request.protocol
  const host = request.host
  if (typeof host === 'string' && host !== '') {
    headers['x-forwarded-host'] = host
  } else {
    delete headers['x-forwarded-host']
  }
  // RFC 7239 `Forwarded` is neither generated nor validated here, so a client's copy is dropped.
  delete headers.forwarded
}
