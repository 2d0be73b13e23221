import type { ResumedFrom } from '../../../lib/diagnostics.js'
import { isEventStreamType } from '../../../lib/event-stream.js'
import type { UpstreamCall } from './call.js'
import { EventStreamBody } from './event-stream-body.js'
import { EventLog } from './event-ids.js'
import type { ResumeHeaders } from './resume-attempt.js'
import { ResumeGap, type ResumableBody, type Route } from './resume-gap.js'
import type { CallResume, SseResumeSettings } from './sse-resume-options.js'

// `sseResume`: an event stream cut by its upstream (a reset, a FIN mid-body, a body timeout; a
// clean end too with `resumeOn: 'any-end'`) is carried on in the same client response from a new
// upstream request sent with `Last-Event-ID` (resume-gap.ts). Only whole events reach the client,
// so a cut never leaves half an event in front of the resumed stream.

/** An event stream whose upstream may be replaced mid-way; the client's response sees one stream. */
export class ResumableEventStream extends EventStreamBody implements ResumableBody {
  readonly replacedHeaders = LAST_EVENT_ID
  private readonly events = new EventLog()
  private readonly gap: ResumeGap

  constructor (resume: () => void, abort: (reason?: Error) => void, call: UpstreamCall, state: CallResume,
    private readonly settings: SseResumeSettings) {
    // The upstream under the stream changes: reading and cancelling go to the current one.
    const route: Route = { resume, abort }
    super(() => route.resume(), (reason) => route.abort(reason))
    this.gap = new ResumeGap(this, route, call, state, settings)
  }

  override deliver (chunk: Buffer): boolean {
    if (this.drained || this.destroyed) return true
    const events = this.events.take(chunk)
    if (events === null) return this.readableLength < this.readableHighWaterMark
    this.gap.progressed()
    return super.deliver(events)
  }

  override complete (): void {
    if (this.settings.resumeOn === 'any-end' && !this.drained && !this.destroyed && !this.events.torn) {
      this.events.dropPartial()
      this.gap.cut(null)
      return
    }
    this.events.dropPartial()
    super.complete()
  }

  override fail (err: Error): void {
    // Half an event already went out (MAX_HELD): cut, as without resume.
    if (this.drained || this.destroyed || this.events.torn) {
      super.fail(err)
      return
    }
    this.events.dropPartial()
    this.gap.cut(err)
  }

  override endAtBoundary (retry: Buffer | null): void {
    super.endAtBoundary(retry)
    if (this.drained) this.gap.stop()
  }

  /** The call's signal (the client left, the deadline passed): no more resuming. */
  abort (reason: Error): void {
    this.gap.stop()
    if (this.destroyed || this.readableEnded) return
    if ((reason as { code?: unknown }).code === 'FST_STREAMLINE_CLIENT_DISCONNECTED') this.destroy()
    else super.fail(reason)
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    this.gap.stop()
    super._destroy(err, callback)
  }

  resumable (): boolean {
    return this.events.lastId !== ''
  }

  resumeHeaders (): Record<string, string> {
    return { 'last-event-id': this.events.lastId }
  }

  /** Only an event stream goes on: anything else (a 404, a 500, JSON) ends the client's stream. */
  takes (statusCode: number, headers: ResumeHeaders): boolean {
    if (statusCode !== 200 || !isEventStreamType(headers['content-type']) || this.drained) return false
    // The resumed stream's replay of events already relayed is dropped.
    this.events.deduplicate = true
    return true
  }

  resumedFrom (): ResumedFrom {
    return { kind: 'event-stream', lastEventId: this.events.lastId }
  }

  /**
   * No more resuming. A stream never resumed and cut by an error is cut for the client too, as
   * without `sseResume`; once resuming began, the client's stream ends cleanly at an event boundary.
   */
  giveUp (err: Error | null): void {
    if (this.destroyed || this.readableEnded) return
    if (err !== null && this.resumes === 0) super.fail(err)
    else super.complete()
  }
}

/** The header a resume request replaces. */
const LAST_EVENT_ID = new Set(['last-event-id'])
