import type { FastifyReply } from 'fastify'
import type { FastifyError } from '@fastify/error'
import { cutResponse } from '../../lib/abrupt-end.js'
import { upstreamError, type UpstreamErrorMessage } from '../../lib/diagnostics.js'
import { answerError } from './answer-error.js'
import { answeredGrpcStatus } from '../../lib/grpc.js'
import {
  UpstreamBadResponseError, UpstreamError, UpstreamTimeoutError, UpstreamTlsError, UpstreamUnavailableError
} from './errors.js'

// Maps what went wrong talking to the upstream to what the client sees. An upstream fault is
// never a 500: 502 when the upstream is unreachable or answered garbage, 504 when it was too
// slow. The body is the fixed `{ statusCode, code, error, message }`: undici's messages can
// hold the upstream's address, so they only go to the log.

const UNAVAILABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH',
  'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED'])
const TIMEOUT = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'ETIMEDOUT', 'FST_STREAMLINE_DEADLINE_EXCEEDED'])
const BAD_RESPONSE = new Set(['FST_REPLY_FROM_BAD_GATEWAY', 'UND_ERR_INFO', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'UND_ERR_RES_EXCEEDED_MAX_SIZE',
  // A response head over undici's 16 KB limit.
  'UND_ERR_HEADERS_OVERFLOW',
  // undici's parser asserts, rather than reports, on a status its HTTP parser lets through but a
  // client cannot use: below 100 (`000`, `099`), or a `101` to a request that asked for no upgrade.
  'ERR_ASSERTION'])
// undici's SocketError for a response it refuses (an unsolicited `101` with an Upgrade header, a
// final `100`); the same code with other messages is a connection that went away.
const REFUSED_RESPONSE = new Set(['bad upgrade', 'bad response'])

// What never reached the upstream: no connection was made, so any request may go to another replica.
const NEVER_REACHED = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT'])
/** A replica's answers that say the replica, not the application, failed (passive health, failover). */
export const FAILOVER_STATUS = new Set([502, 503, 504])

type ErrorWithCode = Error & { code?: unknown, cause?: unknown, errors?: unknown[] }

/** The client-facing error for an upstream failure (reply-from's wrapper or undici's own error). */
export function classifyUpstreamError (error: Error): FastifyError {
  const cause = innermost(error)
  if (cause.code === 'FST_STREAMLINE_UPSTREAM_NO_REPLICA') return cause as FastifyError
  // undici's HTTPParserError has no code for some parse failures (e.g. a bad status line).
  const code = typeof cause.code === 'string' ? cause.code : cause.name === 'HTTPParserError' ? 'HPE_' : ''
  if (code === 'UND_ERR_SOCKET' && REFUSED_RESPONSE.has(cause.message)) return new UpstreamBadResponseError()
  if (UNAVAILABLE.has(code)) return new UpstreamUnavailableError()
  if (TIMEOUT.has(code)) return new UpstreamTimeoutError()
  if (BAD_RESPONSE.has(code) || code.startsWith('HPE_')) return new UpstreamBadResponseError()
  if (code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || /CERT|_SIGNATURE|SELF_SIGNED/.test(code)) return new UpstreamTlsError()
  return new UpstreamError()
}

/** Whether `error` happened before the request reached the upstream: no connection, or no TLS session. */
export function neverReachedUpstream (error: Error): boolean {
  const cause = innermost(error)
  const code = typeof cause.code === 'string' ? cause.code : ''
  return NEVER_REACHED.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_') || /CERT|_SIGNATURE|SELF_SIGNED/.test(code)
}

/** The most specific error: reply-from wraps undici's errors in `cause`, Node wraps happy-eyeballs failures in AggregateError. */
function innermost (error: ErrorWithCode): ErrorWithCode {
  let current: ErrorWithCode = error
  while (current.code !== 'FST_REPLY_FROM_BAD_GATEWAY' && current.cause instanceof Error) current = current.cause as ErrorWithCode
  if (Array.isArray(current.errors) && current.errors[0] instanceof Error) current = current.errors[0] as ErrorWithCode
  return current
}

/**
 * Answers an upstream failure. Before the response head: a clean JSON error (any upstream
 * header already copied onto the reply is dropped), or for a gRPC request its gRPC status. After it: the client connection is
 * destroyed, so a cut body can never look like a complete response.
 */
export function sendUpstreamError (reply: FastifyReply, error: Error): void {
  const clientError = classifyUpstreamError(error)
  reply.log.warn({ err: error, code: clientError.code }, 'upstream request failed')
  const cut = reply.raw.headersSent
  if (cut) cutResponse(reply.raw)
  else answerError(reply, clientError)
  if (upstreamError.hasSubscribers) {
    const statusCode = cut ? reply.raw.statusCode : clientError.statusCode ?? 502
    const message: UpstreamErrorMessage = { request: reply.request, error, code: clientError.code, statusCode }
    const grpcStatus = cut ? undefined : answeredGrpcStatus(reply.raw)
    if (grpcStatus !== undefined) message.grpcStatus = grpcStatus
    upstreamError.publish(message)
  }
}
