import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Readable } from 'node:stream'
import { proxyResponse, streamEnd, type ProxyResponseMessage, type StreamEndCause, type StreamEndMessage } from '../../../lib/diagnostics.js'
import type { UpstreamCall } from '../upstream/call.js'
import { answeredGrpcStatus } from '../../../lib/grpc.js'
import { cutByDrain } from '../lifecycle/connections.js'
import { endedByDrain } from '../lifecycle/event-stream-drain.js'
import { UpstreamBody } from '../upstream/body.js'
import { EventStreamBody } from '../upstream/event-stream-body.js'
import { GrpcBody } from '../upstream/grpc-body.js'

/**
 * The diagnostics channels' view of a relayed response: `proxy:response` when the upstream's
 * head arrives, `stream:end` when the body is over, however it ended. Nothing is done for a
 * channel without subscribers. `wholeBytes`: the size of a body sent whole (not piped).
 */
export function reportResponse (call: UpstreamCall, request: FastifyRequest, reply: FastifyReply, statusCode: number, wholeBytes = 0): void {
  if (!proxyResponse.hasSubscribers && !streamEnd.hasSubscribers) return
  const now = performance.now()
  if (proxyResponse.hasSubscribers) {
    const message: ProxyResponseMessage = { request, statusCode, upstreamHeadersMs: now - call.sentAt, upstream: servedBy(call) }
    proxyResponse.publish(message)
  }
  if (streamEnd.hasSubscribers) watchStreamEnd(call, request, reply, now, wholeBytes)
}

function watchStreamEnd (call: UpstreamCall, request: FastifyRequest, reply: FastifyReply, startedAt: number, wholeBytes: number): void {
  let bytes = wholeBytes
  let piped: Readable | null = null
  // Counted from the moment Fastify pipes the body: a 'data' listener added earlier would
  // start the flow before the pipe exists, and those bytes would never reach the client.
  reply.raw.once('pipe', (body: Readable) => {
    piped = body
    body.on('data', (chunk: Buffer) => { bytes += chunk.length })
  })
  reply.raw.once('close', () => {
    // The deadline aborts the call from its own 'close' listener after a clean end at expiry,
    // which runs after this one: the cause is read once the current listeners are done.
    queueMicrotask(() => {
      const drained = (piped !== null && (endedByDrain(piped) || (piped instanceof GrpcBody && piped.drained))) || cutByDrain(request.server.server)
      const endedBy = drained ? 'drain' : endCause(call)
      // Heartbeats go to the response beside the body: the client received them too.
      if (piped instanceof EventStreamBody) bytes += piped.heartbeatBytes
      const resumes = piped instanceof UpstreamBody ? piped.resumes : 0
      const message: StreamEndMessage = { request, bytes, durationMs: performance.now() - startedAt, endedBy, upstream: servedBy(call), resumes }
      const grpcStatus = grpcStatusOf(call, reply)
      if (grpcStatus !== undefined) message.grpcStatus = grpcStatus
      streamEnd.publish(message)
    })
  })
}

/**
 * The call's abort reason says who ended it: the deadline (its phase), or the client (the
 * close listeners saw it leave). Without one, the upstream ended the body, whole or failed.
 */
function endCause (call: UpstreamCall): StreamEndCause {
  const reason = call.signal.reason as { code?: string, phase?: string } | undefined
  if (reason?.code === 'FST_STREAMLINE_DEADLINE_EXCEEDED' && (reason.phase === 'idle' || reason.phase === 'lifetime')) return reason.phase
  if (reason?.code === 'FST_STREAMLINE_CLIENT_DISCONNECTED') return 'client'
  return 'upstream'
}

/** The gRPC status the client got: one of ours, else the upstream's trailer as relayed. */
function grpcStatusOf (call: UpstreamCall, reply: FastifyReply): number | undefined {
  const ours = answeredGrpcStatus(reply.raw)
  if (ours !== undefined) return ours
  const theirs = call.trailers?.['grpc-status']
  return typeof theirs === 'string' ? Number(theirs) : undefined
}

/** The origin that served the call: the pool's replica (its address), or the upstream. */
function servedBy (call: UpstreamCall): string {
  return call.replica?.origin ?? call.url.origin
}
