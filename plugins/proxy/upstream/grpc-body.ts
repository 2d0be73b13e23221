import type { ServerResponse } from 'node:http'
import { errors } from 'undici'
import type { FastifyBaseLogger } from 'fastify'
import { grpcKind, grpcMessage, grpcStatusFor, markGrpcStatus, trailerFrame, type GrpcKind, type GrpcStreamEnd } from '../../../lib/grpc.js'
import { UpstreamBody } from './body.js'
import { HalfMessageError, UpstreamTruncatedError } from '../errors.js'
import { classifyUpstreamError } from '../upstream-errors.js'
import { GrpcFrames } from './grpc-frames.js'

// A gRPC response from an HTTP/2 upstream ends with trailers (grpc-status). undici 7's h2 client
// completes the request as soon as the trailers frame arrives, and drops whatever node:http2
// still held for it: bytes the upstream sent while undici had the stream paused for a reader
// that was full (up to a stream window, 256 KiB). A paused gRPC response therefore lost its
// last messages and still ended with the upstream's grpc-status (an OK call that never got its
// 4 MB message). So this body keeps undici reading past the usual 64 KiB, up to a backlog larger
// than a gRPC message may be (4 MiB by default in gRPC's libraries), which covers a client that
// reads slower than the upstream sends by up to that much; past it, undici pauses the upstream
// as for any body, and should the call end while paused, the client's stream is cut (an error,
// never a short answer with a good status).

/** The most a gRPC response buffers for a slow client before the upstream is paused. */
const GRPC_BACKLOG = 8 * 1024 * 1024

/**
 * An upstream gRPC body (native or gRPC-Web binary). It follows the message boundaries of what
 * it relays, so that the deadline and a drain can end the stream with a status of ours after
 * whole messages: its trailers (HTTP/2 trailers, or gRPC-Web's trailer frame) then its end, as
 * a complete response (Fastify sees its payload end, not an error). The rest of the upstream's
 * call is cancelled.
 */
export class GrpcBody extends UpstreamBody implements GrpcStreamEnd {
  private readonly frames = new GrpcFrames()
  /** Where it is relayed, once the proxy knows the client speaks gRPC (`attach`). */
  private res: ServerResponse | null = null
  private kind: GrpcKind = 'grpc'
  private log: FastifyBaseLogger | null = null
  /** The status to end with at the next boundary; null: not ending. */
  private ending: { status: number, message: string } | null = null
  private finished = false
  private upstreamDone = false
  private draining = false
  /** The limit on waiting for a boundary, when one was asked for. */
  private grace: NodeJS.Timeout | null = null
  /** The upstream is paused for a client more than GRPC_BACKLOG behind. */
  private paused = false

  /** Whether a drain ended it (for the stream:end channel). */
  get drained (): boolean {
    return this.finished && this.draining
  }

  attach (res: ServerResponse, kind: GrpcKind, log: FastifyBaseLogger): void {
    this.res = res
    this.kind = kind
    this.log = log
  }

  override deliver (chunk: Buffer): boolean {
    // What the upstream still sends while its call is being cancelled: dropped.
    if (this.finished) return true
    const ending = this.ending
    if (ending === null) {
      this.frames.advance(chunk, false)
      return this.pushAhead(chunk)
    }
    const end = this.frames.advance(chunk, true)
    if (!this.frames.atBoundary) return this.pushAhead(chunk)
    this.push(end === chunk.length ? chunk : chunk.subarray(0, end))
    this.finish(ending.status, ending.message)
    return true
  }

  override _read (): void {
    this.paused = false
    super._read()
  }

  override complete (): void {
    if (this.finished) return
    if (this.paused) return this.fail(new UpstreamTruncatedError())
    this.upstreamDone = true
    super.complete()
  }

  /** Keeps undici reading until the client is GRPC_BACKLOG behind (see above). */
  private pushAhead (chunk: Buffer): boolean {
    if (this.push(chunk) || this.readableLength < GRPC_BACKLOG) return true
    this.paused = true
    return false
  }

  override fail (err: Error): void {
    // The upstream call's cancellation after we ended the stream is expected, not a failure to relay.
    if (this.finished) return
    // The upstream failed between two messages: the client gets them, then the failure as a gRPC
    // status, rather than a reset (which grpc-js reads as INTERNAL whatever the cause).
    if (this.open && this.frames.atBoundary && upstreamFault(err)) {
      const answer = classifyUpstreamError(err)
      this.log?.warn({ err, code: answer.code }, 'upstream request failed')
      this.finish(grpcStatusFor(answer.code, answer.statusCode ?? 502), grpcMessage(answer))
      return
    }
    super.fail(err)
  }

  /**
   * Ends the stream with `status` at the current message boundary, or at the next one the upstream
   * sends; when that takes more than `graceMs` (a message stalled half-way), the response is cut
   * instead (Infinity: no limit, a drain has its own `drainTimeout`). With 0, only at once: false
   * when half-way through a message. False when it is not ours to end.
   */
  endAtBoundary (status: number, message: string, graceMs: number): boolean {
    if (!this.open || (graceMs === 0 && !this.frames.atBoundary)) return false
    if (this.ending !== null) return true
    // Known from now, for the deadline's message, whenever the boundary comes.
    markGrpcStatus(this.res as ServerResponse, status)
    if (this.frames.atBoundary) {
      this.finish(status, message)
      return true
    }
    this.ending = { status, message }
    if (graceMs !== Infinity) this.grace = setTimeout(cutHalfMessage, graceMs, this)
    return true
  }

  /** A drain's way: UNAVAILABLE at a boundary, however long the next one takes (the drain's own deadline cuts). */
  drainAtBoundary (status: number, message: string): void {
    if (this.endAtBoundary(status, message, Infinity)) this.draining = true
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    if (this.grace !== null) clearTimeout(this.grace)
    super._destroy(err, callback)
  }

  /** Relayed to a gRPC client, and neither complete (the upstream ended it), failed, nor ending already. */
  private get open (): boolean {
    return this.res !== null && !this.finished && !this.upstreamDone && !this.destroyed
  }

  private finish (status: number, message: string): void {
    this.finished = true
    if (this.grace !== null) clearTimeout(this.grace)
    const res = this.res as ServerResponse
    markGrpcStatus(res, status)
    // Native gRPC: trailers on the response, sent when the piped body ends it.
    if (this.kind === 'grpc') res.addTrailers({ 'grpc-status': String(status), 'grpc-message': message })
    else this.push(trailerFrame(this.kind, status, message))
    this.push(null)
    this.abortUpstream(new errors.RequestAbortedError())
  }
}

// Ours, not the upstream's: the deadline, the client leaving, a cut, a cancellation.
const NOT_UPSTREAM_FAULTS = new Set(['FST_STREAMLINE_DEADLINE_EXCEEDED', 'FST_STREAMLINE_CLIENT_DISCONNECTED', 'FST_STREAMLINE_GRPC_HALF_MESSAGE', 'UND_ERR_ABORTED'])

function upstreamFault (err: Error): boolean {
  return err.name !== 'AbortError' && !NOT_UPSTREAM_FAULTS.has(String((err as { code?: unknown }).code))
}

function cutHalfMessage (body: GrpcBody): void {
  // As any body failing mid-way: the relay cuts the response.
  body.fail(new HalfMessageError())
}

/** Whether an upstream response of this content-type is followed message by message (gRPC-Web text is base64: its boundaries are not seen). */
export function isGrpcBody (contentType: string | string[] | undefined): boolean {
  const kind = grpcKind(contentType)
  return kind === 'grpc' || kind === 'grpc-web'
}
