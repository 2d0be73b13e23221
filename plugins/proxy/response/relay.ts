import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { cutResponse, http2Stream } from '../../../lib/abrupt-end.js'
import type { StreamSafety } from '../../../lib/stream-safety.js'
import { acceptsTrailers, declaredTrailers } from '../hop-by-hop.js'
import type { UpstreamCall } from '../upstream/call.js'
import { EventStreamBody } from '../upstream/event-stream-body.js'
import type { UpstreamResponse } from '../upstream/handler.js'
import type { EventStreamDrain } from '../lifecycle/event-stream-drain.js'
import { reportResponse } from './stream-report.js'
import type { SseHeartbeat } from './sse-heartbeat.js'

// Fields that must not be sent as trailers (RFC 9110 §6.5.1); Fastify refuses them too.
const FORBIDDEN_TRAILERS = new Set(['transfer-encoding', 'content-length', 'host', 'cache-control', 'max-forwards', 'te',
  'authorization', 'set-cookie', 'content-encoding', 'content-type', 'content-range', 'trailer'])

/** What the registration follows its bodies with. */
interface BodyWatch {
  drain: EventStreamDrain
  heartbeat: SseHeartbeat | null
  safety: StreamSafety
}

/**
 * Relays the upstream's response: the head leaves as soon as it is known, the body streams
 * with backpressure (Fastify pipes it), trailers pass when the client asked for them. Event
 * streams are followed by the drain, to end them at an event boundary on `app.close()`, and
 * by the heartbeat when there is one.
 */
export function relayResponse (call: UpstreamCall, request: FastifyRequest, reply: FastifyReply, res: UpstreamResponse, watch: BodyWatch): void {
  const { stream } = res
  if (Buffer.isBuffer(stream)) {
    // Whole already, of known length: Fastify sends it with the head in one write.
    if (reply.sent) return
    reportResponse(call, request, reply, res.statusCode, stream.length)
    reply.send(stream)
    return
  }
  if (reply.sent) {
    // reply-from already answered (it got a status code Fastify refuses): drop the body.
    stream.destroy()
    return
  }
  reportResponse(call, request, reply, res.statusCode)
  if (trailersReachClient(request)) forwardTrailers(call, reply, res, stream)

  // Node sends the head with the first body byte; an SSE client would see nothing until
  // the first event. Fastify copies the headers onto reply.raw and then pipes the body, so
  // 'pipe' is the first moment the complete head can be flushed (also after async onSend hooks).
  // `on`, not `once` (here and for 'error' below): each fires at most once per response, and
  // `once` costs a wrapper and a removal on every request.
  reply.raw.on('pipe', flushHead)
  if (stream instanceof EventStreamBody) {
    watch.drain.follow(stream)
    watch.heartbeat?.watch(stream, reply)
  }
  // Fastify destroys the response when the body fails mid-way; over HTTP/2 that would read as a
  // complete body, and either way the close would look like the client's doing. (A drain ending
  // an event stream ends it cleanly: no error here.)
  stream.on('error', () => cutResponse(reply.raw))
  if (watch.safety.pending) watch.safety.watch(reply, stream)
  reply.send(stream)
}

/**
 * HTTP/2 carries trailers in its framing to every client (gRPC-web and friends rely on them);
 * HTTP/1.1 only in a chunked body, to a client that said it accepts them (`TE: trailers`).
 */
function trailersReachClient (request: FastifyRequest): boolean {
  const version = request.raw.httpVersion
  return version === '2.0' || (version === '1.1' && acceptsTrailers(request.headers.te))
}

function flushHead (this: ServerResponse): void {
  // Not at once: the pipe starts flowing on the next tick, and a body that came in the same
  // read as the upstream's head then goes out with our head in one write. Only a body that has
  // not arrived by then (SSE, a slow upstream) makes the head go out alone.
  setImmediate(flushUnsentHead, this)
}

function flushUnsentHead (res: ServerResponse): void {
  // HTTP/2 sends the head as its own HEADERS frame, with no encoding question.
  if (http2Stream(res) !== undefined) {
    if (!res.headersSent && !res.destroyed) res.flushHeaders()
    return
  }
  const internal = res as unknown as { _headerSent: boolean, _send: (data: string, encoding: BufferEncoding) => boolean }
  // `_headerSent` (stable since Node 0.x) is the only sign the head reached the socket;
  // `headersSent` turns true as soon as it is merely built.
  if (res.destroyed || internal._headerSent) return
  // What flushHeaders() does, with the right encoding. It builds the head (Fastify only called
  // setHeader; ServerResponse's `_implicitHeader` is this very writeHead call), then calls
  // `_send('')`, which writes the head as a string in the default encoding, utf8: an upstream's
  // latin1 byte in a header value (obs-text, `caf\xE9`) would leave as two UTF-8 bytes, whereas
  // a head sent with the first body chunk leaves as latin1. `_send` is the internal method both
  // paths use (Node 0.x to 24); writing an empty Buffer instead would throw on a HEAD response
  // when the server has `rejectNonStandardBodyWrites`.
  if (!res.headersSent) res.writeHead(res.statusCode)
  internal._send('', 'latin1')
}

/**
 * Every trailer the upstream sends that a trailer may carry, declared in its `Trailer` header or
 * not (gRPC servers often declare only `grpc-status`, then send `grpc-message` too): added to the
 * response when the body ends, before the pipe ends the response. Not Fastify's `reply.trailer`,
 * which needs each name before the body starts. Declared names are announced in `Trailer` for
 * HTTP/1.1 clients.
 */
function forwardTrailers (call: UpstreamCall, reply: FastifyReply, res: UpstreamResponse, body: Readable): void {
  if (res.headers['content-length'] !== undefined) return
  const declared = declaredTrailers(res.headers.trailer).filter(name => !FORBIDDEN_TRAILERS.has(name))
  if (declared.length > 0) reply.header('trailer', declared.join(', '))
  // Listened before Fastify pipes the body: this runs before the pipe ends the response.
  body.once('end', () => {
    const received = call.trailers
    if (received === null) return
    const allowed: Record<string, string> = {}
    let any = false
    for (const name in received) {
      const value = received[name]
      if (value === undefined || FORBIDDEN_TRAILERS.has(name)) continue
      allowed[name] = Array.isArray(value) ? value.join(', ') : value
      any = true
    }
    if (any && !reply.raw.destroyed) reply.raw.addTrailers(allowed)
  })
}
