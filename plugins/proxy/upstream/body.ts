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
  /** The length the response's head declares (-1: none), and the bytes delivered so far. */
  private expected = -1
  private delivered = 0

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
    this.delivered += chunk.length
    return this.push(chunk)
  }

  /**
   * The body is `length` bytes long. undici 7 checks that over HTTP/1.1 only: over HTTP/2, an
   * END_STREAM short of it with an RST_STREAM(NO_ERROR) behind reaches us as a complete response.
   */
  expect (length: number): void {
    this.expected = length
  }

  /** The upstream's body is complete; short of its declared length, it was cut. */
  complete (): void {
    if (this.delivered < this.expected) this.fail(new errors.ResponseContentLengthMismatchError())
    else this.push(null)
  }

  /** Ends the stream with `err` from our side: never an unhandled 'error', whoever reads it. */
  fail (err: Error): void {
    this.on('error', noop)
    this.destroy(err)
  }
}
