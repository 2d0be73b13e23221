import type { FastifyReply } from 'fastify'
import type { ServerResponse } from 'node:http'
import { deadlineExpired, type DeadlineExpiredMessage } from '../../lib/diagnostics.js'
import { sendError, writeError } from '../../lib/error-answer.js'
import { quietLine } from '../../lib/quiet-line.js'
import { GRPC_STATUS, answeredGrpcStatus, grpcMessage, grpcStreamEnd } from '../../lib/grpc.js'
import { DeadlineExceededError } from './errors.js'
import { cutResponse, http2Stream } from '../../lib/abrupt-end.js'
import type { ActiveDeadline } from './request-deadline.js'
import { isEventStream, sentHeader } from './response-probes.js'
import type { DeadlinePhase } from './types.js'

/**
 * Ends a request whose deadline passed. The answer comes first and the abort second: code
 * listening to the signal (a proxy's upstream request) must find the response already decided.
 */
export function expire (deadline: ActiveDeadline, phase: DeadlinePhase, now: number): void {
  deadline.stop()
  const elapsed = now - deadline.arrival
  const reason = new DeadlineExceededError(phase, elapsed)
  const { request, reply } = deadline
  request.log.warn({ route: request.routeOptions.url, phase, elapsed }, 'deadline exceeded')
  quietLateRejection(reply, reason)
  const res = reply.raw
  if (!res.headersSent && !deadline.sending) {
    answerExpired(deadline, reason)
    publishExpiry(deadline, phase, elapsed, '504')
  } else if (res.writableEnded) {
    publishExpiry(deadline, phase, elapsed, 'clean-end')
  } else if (endOrCut(res, reason)) {
    publishExpiry(deadline, phase, elapsed, 'clean-end')
    // A clean end is only clean once flushed: a piped source aborted now would make Fastify
    // destroy the socket under the final chunk. `close` follows `finish`, or a lost client.
    res.once('close', () => deadline.abort(reason))
    return
  } else {
    publishExpiry(deadline, phase, elapsed, 'cut')
  }
  deadline.abort(reason)
}

function publishExpiry (deadline: ActiveDeadline, phase: DeadlinePhase, elapsed: number, outcome: DeadlineExpiredMessage['outcome']): void {
  if (!deadlineExpired.hasSubscribers) return
  const { request, reply } = deadline
  const message: DeadlineExpiredMessage = { request, reply, route: request.routeOptions.url ?? request.url, phase, elapsed, outcome }
  const grpcStatus = answeredGrpcStatus(reply.raw)
  if (grpcStatus !== undefined) message.grpcStatus = grpcStatus
  deadlineExpired.publish(message)
}

/** Before headers: one well-formed error response, then later sends from the handler are ignored. */
function answerExpired (deadline: ActiveDeadline, reason: DeadlineExceededError): void {
  const { request, reply, settings } = deadline
  if (reply.sent) {
    // Hijacked: the handler owns reply.raw, so the answer is written on it directly, and the
    // connection closes after it: whatever the handler did with the socket, it is not reusable.
    if (!reply.raw.destroyed) writeError(reply.raw, reason, settings.statusCode)
    return
  }
  // The app's own headers (CORS, say) stay; a length or encoding set for another body would lie.
  reply.removeHeader('content-length')
  reply.removeHeader('content-encoding')
  // An unread request body would be parsed as the next request.
  if (!request.raw.complete) endConnectionAfter(reply.raw)
  sendError(reply, reason, settings.statusCode)
  reply.send = ignoreLateSend as FastifyReply['send']
}

/**
 * Nothing more may be read on this connection after this response. HTTP/1.1: `Connection:
 * close`. HTTP/2 frames every stream on its own and forbids that header: Node's compatibility
 * layer itself resets a stream whose response ended before its request body, with NO_ERROR,
 * which tells the client to stop sending without an error (RFC 9113 §8.1).
 */
function endConnectionAfter (res: ServerResponse): void {
  if (http2Stream(res) === undefined) res.setHeader('connection', 'close')
}

function ignoreLateSend (this: FastifyReply): FastifyReply {
  return this
}

// Fastify's words when an async handler rejects after its reply was sent, and when the stream
// it was piping errors after the headers went out.
const LATE_REJECTION = 'Promise errored, but reply.sent = true was set'
const STREAM_ERROR = 'response terminated with an error with headers already sent'

/**
 * One expiry, one `warn` line. A handler awaiting work with the signal rejects with the abort once
 * we have answered, and Fastify would log that at error level; a body stream (a proxied upstream)
 * errors once the expiry ends or cuts the response, and Fastify would log that at warn. On the
 * expired reply only, the first is logged at debug when it is the abort, the second always (the
 * expiry ended the response: whatever its source reports afterwards follows from that); any other
 * late error keeps its level.
 */
function quietLateRejection (reply: FastifyReply, reason: Error): void {
  const isAbort = (obj: unknown): boolean => {
    const err = (obj as { err?: { cause?: unknown, name?: string } } | null)?.err
    return err === reason || err?.cause === reason || err?.name === 'AbortError'
  }
  reply.log = quietLine(quietLine(reply.log, 'error', LATE_REJECTION, isAbort), 'warn', STREAM_ERROR, () => true)
}

/**
 * After headers: an event stream ends cleanly so EventSource reconnects, a relayed gRPC stream
 * with DEADLINE_EXCEEDED after its last whole message (a gRPC client reads its outcome from the
 * trailers, not from a reset); anything else is
 * cut, so the client cannot mistake a partial body for a whole one. A client that is not
 * reading (bytes piling up) is cut too: a clean end would never reach it. Returns whether
 * it ended cleanly.
 */
function endOrCut (res: ServerResponse, reason: DeadlineExceededError): boolean {
  if (endGrpcStream(res, reason)) return true
  if (isEventStream(res) && sentHeader(res, 'content-length') === undefined && clientKeepsUp(res)) {
    res.end()
    return true
  }
  cutResponse(res)
  return false
}

// How long a gRPC stream that expired half-way through a message may take to finish it, before it is cut.
const HALF_MESSAGE_GRACE = 1000

/**
 * A gRPC stream the proxy relays, ended with DEADLINE_EXCEEDED at a message boundary: at once, or
 * when the message in flight is whole. A stream stalled half-way through one (the idle timeout's
 * case) cannot end cleanly, and is cut. False when it is not such a stream.
 */
function endGrpcStream (res: ServerResponse, reason: DeadlineExceededError): boolean {
  const end = grpcStreamEnd(res)
  const grace = reason.phase === 'idle' ? 0 : HALF_MESSAGE_GRACE
  return end !== undefined && clientKeepsUp(res) && end.endAtBoundary(GRPC_STATUS.DEADLINE_EXCEEDED, grpcMessage(reason), grace)
}

// Bytes written an instant before the expiry (a heartbeat) may still sit in the response's
// buffer, HTTP/2's above all, where the session sends them on a later turn: that is not a
// client that stopped reading, which shows as backpressure (`writableNeedDrain`).
const IN_FLIGHT = 1024

function clientKeepsUp (res: ServerResponse): boolean {
  if (res.writableLength === 0) return true
  // The HTTP/2 compatibility response has no writableNeedDrain of its own; its stream has.
  const writable = http2Stream(res) ?? res
  return res.writableLength <= IN_FLIGHT && !writable.writableNeedDrain
}
