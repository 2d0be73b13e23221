import type { FastifyReply } from 'fastify'
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { ServerHttp2Stream } from 'node:http2'
import { http2Stream } from './abrupt-end.js'
import { errorBody } from './error-body.js'
import { grpcKind, grpcMessage, grpcStatusFor, requestGrpcKind, writeGrpcAnswer } from './grpc.js'

// How both plugins answer with one of their errors: `{ statusCode, code, error, message }` as
// JSON (error-body.ts), one writer per kind of response; a gRPC request gets the same error as a
// gRPC status instead (grpc.ts), the stable code in its grpc-message. Callers decide which headers set so
// far survive (the proxy drops an upstream's, the deadline keeps the app's).

const JSON_TYPE = 'application/json; charset=utf-8'

type AnsweredError = { statusCode?: number, code: string, message: string }

/** Through Fastify: its onSend hooks run, and its reply is marked sent. */
export function sendError (reply: FastifyReply, error: AnsweredError, statusCode = error.statusCode ?? 500): void {
  const kind = grpcKind(reply.request.headers['content-type'])
  if (kind !== null) {
    writeGrpcAnswer(reply.raw, kind, grpcStatusFor(error.code, statusCode), grpcMessage(error))
    return
  }
  reply.code(statusCode).type(JSON_TYPE).send(errorBody(error, statusCode))
}

/**
 * On a raw response (a hijacked reply, an upgrade's), before any byte of an answer went out.
 * Nothing more is read on that connection after it: HTTP/1.1 gets `Connection: close`; HTTP/2
 * frames each stream on its own and forbids the header (only the stream ends).
 */
export function writeError (res: ServerResponse, error: AnsweredError, statusCode = error.statusCode ?? 500): void {
  // Answered already, by whoever holds the response too (a hijacking handler, another listener
  // that took an HTTP/2 stream): a second head would throw.
  if (res.headersSent || (http2Stream(res) as ServerHttp2Stream | undefined)?.headersSent === true) return
  const kind = requestGrpcKind(res)
  if (kind !== null) {
    if (http2Stream(res) === undefined) res.setHeader('connection', 'close')
    writeGrpcAnswer(res, kind, grpcStatusFor(error.code, statusCode), grpcMessage(error))
    return
  }
  const body = JSON.stringify(errorBody(error, statusCode))
  const headers: OutgoingHttpHeaders = { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) }
  if (http2Stream(res) === undefined) headers.connection = 'close'
  res.writeHead(statusCode, headers)
  res.end(body)
}
