import { EventStreamBody } from '../upstream/event-stream-body.js'

// What `app.close()` does to proxied event streams: each one ends at the next event boundary,
// after an optional `retry:` field (upstream/event-stream-body.ts). The connections themselves are
// drained in connections.ts.

/** Whether `body` is an event stream that a drain ended (for the stream:end channel). */
export function endedByDrain (body: unknown): boolean {
  return body instanceof EventStreamBody && body.drained
}

/** The proxied event streams of one registration; nothing is tracked for other responses. */
export class EventStreamDrain {
  private readonly streams = new Set<EventStreamBody>()
  private readonly retry: Buffer | null
  private draining = false

  constructor (retryMs: number | false) {
    this.retry = retryMs === false ? null : Buffer.from(`retry: ${retryMs}\n\n`)
  }

  /** Follows an event stream until it closes; one that starts during the drain ends at once. */
  follow (body: EventStreamBody): void {
    if (this.draining) {
      body.endAtBoundary(this.retry)
      return
    }
    this.streams.add(body)
    body.once('close', () => this.streams.delete(body))
  }

  start (): void {
    this.draining = true
    for (const body of this.streams) body.endAtBoundary(this.retry)
    this.streams.clear()
  }
}
