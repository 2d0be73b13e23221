import type { IncomingHttpHeaders, ServerResponse } from 'node:http'

// gRPC's own words for the answers the plugins write themselves: a gRPC client reads its
// outcome from `grpc-status` and `grpc-message`, never from a JSON body (it would report
// "Received RST_STREAM" or "Call ended without gRPC status"). Native gRPC (HTTP/2) gets a
// trailers-only response; gRPC-Web gets its trailers as the body's trailer frame.

/** How a request speaks gRPC: native (`application/grpc`, `+proto`, `+json`...), gRPC-Web (binary), gRPC-Web text (base64). */
export type GrpcKind = 'grpc' | 'grpc-web' | 'grpc-web-text'

/** gRPC status codes the plugins answer with (grpc/doc/statuscodes.md). */
export const GRPC_STATUS = {
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16
} as const

const GRPC_TYPE = /^application\/grpc/i

/** The request's gRPC kind from its content-type, or null for anything else. */
export function grpcKind (contentType: string | string[] | undefined): GrpcKind | null {
  // Tested in place first: every proxied request asks, and lower-casing would copy its type.
  if (typeof contentType !== 'string' || !GRPC_TYPE.test(contentType)) return null
  const type = contentType.toLowerCase()
  // The subtype ends at `+` (a codec), `;` (parameters), or with the string.
  const rest = type.slice(16)
  if (rest === '' || rest[0] === '+' || rest[0] === ';') return 'grpc'
  if (rest.startsWith('-web-text')) return endsSubtype(rest, 9) ? 'grpc-web-text' : null
  if (rest.startsWith('-web')) return endsSubtype(rest, 4) ? 'grpc-web' : null
  return null
}

function endsSubtype (rest: string, at: number): boolean {
  return rest.length === at || rest[at] === '+' || rest[at] === ';'
}

/** The gRPC kind of the request a response answers (Node's `res.req`, HTTP/1.1 and HTTP/2 alike). */
export function requestGrpcKind (res: ServerResponse): GrpcKind | null {
  return grpcKind(requestType(res))
}

function requestType (res: ServerResponse): string | undefined {
  return (res as { req?: { headers?: IncomingHttpHeaders } }).req?.headers?.['content-type']
}

// The plugins' own errors, by stable code, where gRPC has a better word than the HTTP status's.
const BY_CODE: Record<string, number> = {
  FST_STREAMLINE_DEADLINE_EXCEEDED: GRPC_STATUS.DEADLINE_EXCEEDED,
  FST_STREAMLINE_UPSTREAM_TIMEOUT: GRPC_STATUS.DEADLINE_EXCEEDED,
  FST_STREAMLINE_UPSTREAM_UNAVAILABLE: GRPC_STATUS.UNAVAILABLE,
  FST_STREAMLINE_UPSTREAM_NO_REPLICA: GRPC_STATUS.UNAVAILABLE,
  FST_STREAMLINE_UPSTREAM_TLS: GRPC_STATUS.UNAVAILABLE,
  FST_STREAMLINE_UPSTREAM_BAD_RESPONSE: GRPC_STATUS.INTERNAL,
  FST_STREAMLINE_PROXY_SHUTTING_DOWN: GRPC_STATUS.UNAVAILABLE
}

/** gRPC's mapping of an HTTP status with no gRPC status (grpc/doc/http-grpc-status-mapping.md). */
export function grpcStatusForHttp (statusCode: number): number {
  switch (statusCode) {
    case 400: return GRPC_STATUS.INTERNAL
    case 401: return GRPC_STATUS.UNAUTHENTICATED
    case 403: return GRPC_STATUS.PERMISSION_DENIED
    case 404: return GRPC_STATUS.UNIMPLEMENTED
    case 429: case 502: case 503: case 504: return GRPC_STATUS.UNAVAILABLE
    default: return GRPC_STATUS.UNKNOWN
  }
}

/** The gRPC status of one of the plugins' errors: by its code where it has one of its own, else by its HTTP status. */
export function grpcStatusFor (code: string, statusCode: number): number {
  return BY_CODE[code] ?? grpcStatusForHttp(statusCode)
}

/**
 * `grpc-message`'s percent-encoding (gRPC over HTTP/2 spec): every byte of the UTF-8 text
 * outside printable ASCII, and `%` itself, as `%XX`.
 */
export function percentEncode (text: string): string {
  let out = ''
  for (const byte of Buffer.from(text)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : '%' + byte.toString(16).toUpperCase().padStart(2, '0')
  }
  return out
}

/** The message clients see: the error's text, with its stable code for operators. */
export function grpcMessage (error: { code: string, message: string }): string {
  return percentEncode(`${error.message} [${error.code}]`)
}

/**
 * A gRPC-Web trailer frame (flag 0x80, 4-byte big-endian length, then the trailers as an
 * HTTP/1 header block), base64 for `-text`.
 */
export function trailerFrame (kind: GrpcKind, status: number, message: string): Buffer {
  const block = Buffer.from(`grpc-status:${status}\r\ngrpc-message:${message}\r\n`)
  const frame = Buffer.allocUnsafe(5 + block.length)
  frame[0] = 0x80
  frame.writeUInt32BE(block.length, 1)
  block.copy(frame, 5)
  return kind === 'grpc-web-text' ? Buffer.from(frame.toString('base64')) : frame
}

/** The response content-type for a request of `kind`: gRPC-Web keeps its own (its codec too). */
export function responseType (kind: GrpcKind, requestType: string | undefined): string {
  if (kind === 'grpc') return 'application/grpc'
  return requestType?.split(';')[0].trim().toLowerCase() ?? `application/${kind}`
}

const kGrpcStatus = Symbol('fastify-streamline.grpc-status')
type MarkedResponse = ServerResponse & { [kGrpcStatus]?: number }

/** The gRPC status the plugins ended `res` with themselves, if they did (for the diagnostics channels). */
export function answeredGrpcStatus (res: ServerResponse): number | undefined {
  return (res as MarkedResponse)[kGrpcStatus]
}

/**
 * Answers a gRPC request before any byte of its response went out: HTTP 200, a trailers-only
 * response. Over HTTP/2 the head carries END_STREAM only when the response ends before its head
 * is written (Node's compatibility layer then sends headers and end as one frame), so the head
 * is set here and `end()` writes it; headers set on the Fastify reply are not sent (its onSend
 * hooks do not run).
 */
export function writeGrpcAnswer (res: ServerResponse, kind: GrpcKind, status: number, message: string): void {
  (res as MarkedResponse)[kGrpcStatus] = status
  res.statusCode = 200
  res.setHeader('content-type', responseType(kind, requestType(res)))
  if (kind === 'grpc') {
    res.setHeader('grpc-status', String(status))
    res.setHeader('grpc-message', message)
    res.end()
    return
  }
  const frame = trailerFrame(kind, status, message)
  res.setHeader('content-length', frame.length)
  res.end(frame)
}

/** What ends a relayed gRPC stream with a status of ours at a message boundary (the proxy's upstream body). */
export interface GrpcStreamEnd {
  /**
   * Ends the stream with `status` after the last whole message relayed, or the one in flight when
   * it comes within `graceMs` (else the response is cut; 0: at once or not at all); false when the
   * stream is not one it can end.
   */
  endAtBoundary: (status: number, message: string, graceMs: number) => boolean
}

const kStreamEnd = Symbol('fastify-streamline.grpc-stream-end')
type EndableResponse = ServerResponse & { [kStreamEnd]?: GrpcStreamEnd }

/** Lets the deadline end `res`'s gRPC stream cleanly (see `GrpcStreamEnd`). */
export function setGrpcStreamEnd (res: ServerResponse, end: GrpcStreamEnd): void {
  (res as EndableResponse)[kStreamEnd] = end
}

/** How `res`'s gRPC stream can be ended cleanly; undefined when nobody said (an app's own stream). */
export function grpcStreamEnd (res: ServerResponse): GrpcStreamEnd | undefined {
  return (res as EndableResponse)[kStreamEnd]
}

/** Marks `res` as ended with a gRPC status of ours (for the diagnostics channels). */
export function markGrpcStatus (res: ServerResponse, status: number): void {
  (res as MarkedResponse)[kGrpcStatus] = status
}
