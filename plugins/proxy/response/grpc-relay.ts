import type { FastifyReply, FastifyRequest } from 'fastify'
import { grpcKind, grpcStatusForHttp, percentEncode, setGrpcStreamEnd, writeGrpcAnswer } from '../../../lib/grpc.js'
import type { UpstreamCall } from '../upstream/call.js'
import { GrpcBody } from '../upstream/grpc-body.js'
import type { UpstreamResponse } from '../upstream/handler.js'
import type { GrpcDrain } from '../lifecycle/grpc-drain.js'
import { reportResponse } from './stream-report.js'

/**
 * A gRPC request's response, before the relay: an upstream that answered with an HTTP error and
 * no gRPC status (a plain 503 from a load balancer, a 404 from a web server) is answered as gRPC
 * maps that status (http-grpc-status-mapping.md), a trailers-only response; a gRPC stream is
 * followed message by message, for the deadline and the drain to end it with a status of ours.
 * Returns whether it answered (the relay then has nothing to do). Other requests: one test of
 * their content-type.
 */
export function answerGrpc (call: UpstreamCall, request: FastifyRequest, reply: FastifyReply, res: UpstreamResponse, drain: GrpcDrain): boolean {
  const kind = grpcKind(request.headers['content-type'])
  if (kind === null || reply.sent) return false
  const { stream, statusCode, headers } = res
  if (statusCode !== 200 && headers['grpc-status'] === undefined) {
    if (!Buffer.isBuffer(stream)) stream.destroy()
    reportResponse(call, request, reply, statusCode)
    const message = percentEncode(`upstream answered HTTP ${statusCode} without a gRPC status`)
    writeGrpcAnswer(reply.raw, kind, grpcStatusForHttp(statusCode), message)
    return true
  }
  if (stream instanceof GrpcBody && (kind === 'grpc') === (grpcKind(headers['content-type']) === 'grpc')) {
    stream.attach(reply.raw, kind, reply.log)
    setGrpcStreamEnd(reply.raw, stream)
    drain.follow(stream)
  }
  return false
}
