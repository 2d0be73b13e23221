import { errors } from 'undici'
import { UpstreamBody } from './body.js'
import { EventBoundary } from './sse-boundary.js'

/**
 * An upstream event stream's body. It follows the event boundaries of what it relays, so that a
 * drain (`app.close()`) can end it at a boundary as a complete response, after an optional
 * `retry:` field (Fastify sees its payload end, not an error), and so that the heartbeat writes
 * only between events. The same stream as any upstream body, not a second one piped behind it:
 * a Transform per event stream cost about 3 KiB of heap per open stream and a hop per event.
 */
export class EventStreamBody extends UpstreamBody {
  /** Chunks relayed so far: how the heartbeat sweep (response/sse-heartbeat.ts) sees activity, at no per-chunk clock read. */
  relayed = 0
  /** Bytes the heartbeat wrote on the response beside this body (for the stream:end channel's count). */
  heartbeatBytes = 0
  private readonly boundary = new EventBoundary()
  private retry: Buffer | null = null
  private ending = false
  private finished = false
  private upstreamDone = false

  /** Whether a drain ended it (for the stream:end channel). */
  get drained (): boolean {
    return this.finished
  }

  /** Whether bytes of our own may be written on the response now: between two events, nothing of ours pending, not ending. */
  get betweenEvents (): boolean {
    return !this.ending && !this.upstreamDone && !this.destroyed && this.readableLength === 0 && this.boundary.settled
  }

  override deliver (chunk: Buffer): boolean {
    // What the upstream still sends while its request is being closed after a drain: dropped.
    if (this.finished) return true
    const end = this.ending ? this.boundary.endIn(chunk) : -1
    if (end === -1) {
      this.relayed++
      this.boundary.pass(chunk)
      return this.push(chunk)
    }
    this.push(chunk.subarray(0, end))
    this.finish()
    return true
  }

  override complete (): void {
    if (this.finished) return
    this.upstreamDone = true
    super.complete()
  }

  override fail (err: Error): void {
    // The upstream request's abort after a drain ended the stream is expected, not a failure to relay.
    if (this.finished) return
    super.fail(err)
  }

  /** Ends the stream at the current boundary, or at the next one the upstream sends. */
  endAtBoundary (retry: Buffer | null): void {
    // Already complete (the upstream ended it) or failed, but not closed yet.
    if (this.ending || this.upstreamDone || this.destroyed) return
    this.ending = true
    this.retry = retry
    if (this.boundary.atBoundary) this.finish()
  }

  private finish (): void {
    this.finished = true
    if (this.retry !== null) this.push(this.retry)
    this.push(null)
    // The rest of the upstream's stream is not wanted: its request is closed.
    this.abortUpstream(new errors.RequestAbortedError())
  }
}
