import { Readable } from 'node:stream'
import { errors } from 'undici'

const MAX_BUFFERED = 64 * 1024

function noop (): void {}

/**
 * An upstream response body as a stream, fed by the upstream handler. What undici's own
 * `request()` body does, without what the proxy never uses (its `.json()`/`.text()` mixins):
 * reading asks undici to resume the connection (backpressure), and destroying the stream before
 * its end aborts the upstream request, so the upstream sees its connection close.
 */
export class UpstreamBody extends Readable {
  /** Times a resumable body went on after a cut (resume-gap.ts), for the stream:end channel; 0 for any other. */
  resumes = 0

  constructor (private readonly resumeUpstream: () => void, protected readonly abortUpstream: (reason?: Error) => void) {
    // 64 KiB, as undici's own body: one socket read, and the same backpressure.
    super({ highWaterMark: MAX_BUFFERED })
  }

  override _read (): void {
    this.resumeUpstream()
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.readableEnded) this.abortUpstream(err ?? new errors.RequestAbortedError())
    callback(err)
  }

  /** A chunk of the upstream's body; false: the reader is full, undici pauses the upstream. */
  deliver (chunk: Buffer): boolean {
    return this.push(chunk)
  }

  /** The upstream's body is complete. */
  complete (): void {
    this.push(null)
  }

  /** Ends the stream with `err` from our side: never an unhandled 'error', whoever reads it. */
  fail (err: Error): void {
    this.on('error', noop)
    this.destroy(err)
  }
}
