// Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection, so a proxy removes them in
// both directions: `Connection` and every name it lists, plus the fixed list below.
// reply-from already drops the client's `Connection` names before our request hook runs,
// and we call these functions before adding our own headers, so a client `Connection:
// x-forwarded-for` can never remove a header the proxy adds.

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'te', 'trailer', 'transfer-encoding', 'upgrade']

type Headers = Record<string, unknown>

/** Removes hop-by-hop headers in place; `TE: trailers` survives when `keepTeTrailers`. */
export function stripHopByHop<T extends Headers> (headers: T, keepTeTrailers: boolean): T {
  for (const name of listValues(headers.connection)) delete headers[name]
  const te = headers.te
  for (const name of HOP_BY_HOP) delete headers[name]
  if (keepTeTrailers && acceptsTrailers(te)) (headers as Headers).te = 'trailers'
  return headers
}

/** True when a `TE` header value lists `trailers`. */
export function acceptsTrailers (te: unknown): boolean {
  return listValues(te).includes('trailers')
}

/**
 * Request headers the proxy must not forward although they are not hop-by-hop:
 * `expect` (100-continue is answered here by Node; undici refuses the header) and, for a
 * request without a body to stream, its framing headers.
 */
export function stripRequestOnly (headers: Headers, hasBody: boolean): void {
  delete headers.expect
  if (!hasBody) {
    delete headers['content-length']
    delete headers['transfer-encoding']
  }
}

/** The names listed in a response's `Trailer` header (lower-cased). */
export function declaredTrailers (trailer: unknown): string[] {
  return listValues(trailer)
}

/** The lower-cased tokens of a comma-separated header, repeated or not. */
function listValues (value: unknown): string[] {
  const values = typeof value === 'string' ? [value] : Array.isArray(value) ? value.map(String) : []
  return values.flatMap(v => v.split(',')).map(v => v.trim().toLowerCase()).filter(v => v !== '')
}
