import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { EventBoundary } from './sse-boundary.js'

// What `app.close()` does to proxied event streams: each one ends at the next event boundary,
// after an optional `retry:` field. The connections themselves are drained in connections.ts.

/**
 * One proxied event stream, relayed through this stream so that a drain can end it at an event
 * boundary as a complete response (Fastify sees its payload end, not an error).
 */
export class EventStreamRelay extends Transform {
  /** Chunks relayed so far: how the heartbeat sweep (sse-heartbeat.ts) sees activity, at no per-chunk clock read. */
  relayed = 0
  private readonly boundary = new EventBoundary()
  private ending = false
  private finished = false

  get drained (): boolean {
    return this.finished
  }

  /** Whether bytes of our own may be written on the response now: between two events, nothing of ours pending, not ending. */
  get betweenEvents (): boolean {
    return !this.ending && !this.writableEnded && !this.destroyed && this.readableLength === 0 && this.boundary.settled
  }

  constructor (private readonly body: Readable, private readonly retry: Buffer | null) {
    super()
    this.onBodyError = this.onBodyError.bind(this)
    body.on('error', this.onBodyError)
    body.pipe(this)
    // The client left, or the upstream failed: the upstream request goes too.
    this.once('close', () => body.destroy())
  }

  /** Ends the stream at the current boundary, or at the next one the upstream sends. */
  drain (): void {
    // Already complete (the upstream ended it) or failed, but not closed yet.
    if (this.ending || this.writableEnded || this.destroyed) return
    this.ending = true
    if (this.boundary.atBoundary) this.finish()
  }

  override _transform (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    // Written before the drain ended the stream (it was waiting behind backpressure): dropped.
    if (this.finished) return callback()
    const end = this.ending ? this.boundary.endIn(chunk) : -1
    if (end === -1) {
      this.relayed++
      this.boundary.pass(chunk)
      callback(null, chunk)
      return
    }
    this.push(chunk.subarray(0, end))
    this.finish()
    callback()
  }

  private finish (): void {
    this.finished = true
    // The upstream request is closed; its body's abort error is expected, not a failure to relay.
    this.body.unpipe(this)
    this.body.off('error', this.onBodyError)
    this.body.on('error', ignore)
    this.body.destroy()
    if (this.retry !== null) this.push(this.retry)
    this.push(null)
    this.end()
  }

  private onBodyError (err: Error): void {
    // A visible cut for the client, as for any other upstream failure mid-body.
    this.destroy(err)
  }
}

function ignore (): void {}

/** Whether `body` is an event stream that a drain ended (for the stream:end channel). */
export function endedByDrain (body: Readable): boolean {
  return body instanceof EventStreamRelay && body.drained
}

/** The proxied event streams of one registration; nothing is tracked for other responses. */
export class ProxyDrain {
  private readonly streams = new Set<EventStreamRelay>()
  private readonly retry: Buffer | null
  private draining = false

  constructor (retryMs: number | false) {
    this.retry = retryMs === false ? null : Buffer.from(`retry: ${retryMs}\n\n`)
  }

  /** The stream to send in place of an event-stream body. */
  relayEventStream (body: Readable): EventStreamRelay {
    const relay = new EventStreamRelay(body, this.retry)
    // Answered during the drain (its request was waiting for the upstream when it started).
    if (this.draining) {
      relay.drain()
      return relay
    }
    this.streams.add(relay)
    relay.once('close', () => this.streams.delete(relay))
    return relay
  }

  start (): void {
    this.draining = true
    for (const relay of this.streams) relay.drain()
    this.streams.clear()
  }
}
