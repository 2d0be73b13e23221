import { UpstreamBody } from './body.js'
import { UpstreamTruncatedError } from '../errors.js'

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

export class GrpcBody extends UpstreamBody {
  private paused = false

  override _read (): void {
    this.paused = false
    super._read()
  }

  override deliver (chunk: Buffer): boolean {
    if (this.push(chunk) || this.readableLength < GRPC_BACKLOG) return true
    this.paused = true
    return false
  }

  override complete (): void {
    if (this.paused) this.fail(new UpstreamTruncatedError())
    else super.complete()
  }
}

/** `application/grpc`, with a `+codec` or parameters; not gRPC-Web (its trailers travel in the body). */
export function isGrpcType (type: unknown): boolean {
  if (typeof type !== 'string' || !type.startsWith('application/grpc')) return false
  const next = type.charCodeAt(16)
  // end, '+', ';', ' '
  return Number.isNaN(next) || next === 43 || next === 59 || next === 32
}
