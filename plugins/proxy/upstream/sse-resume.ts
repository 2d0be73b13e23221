import { errors } from 'undici'
import { isEventStreamType } from '../../../lib/event-stream.js'
import { streamResumed, type StreamResumedMessage } from '../../../lib/diagnostics.js'
import type { UpstreamCall } from './call.js'
import { EventStreamBody } from './event-stream-body.js'
import { EventLog } from './event-ids.js'
import { aimAtReplica } from './replica-attempt.js'
import { ResumeAttempt, resumeRequest, type ResumeHeaders, type ResumeTarget } from './resume-attempt.js'
import type { CallResume, SseResumeSettings } from './sse-resume-options.js'

// `sseResume`: an event stream cut by its upstream (a reset, a FIN mid-body, a body timeout; a
// clean end too with `resumeOn: 'any-end'`) is carried on in the same client response from a new
// upstream request sent with `Last-Event-ID`, to another replica when the pool has one. Only whole
// events reach the client, so a cut never leaves half an event in front of the resumed stream.
// One timer per stream, only while it is cut: the gap's budget, which also paces the retries.

/** The wait before the n-th retry of a gap (n >= 1): RETRY_BASE * 2^(n-1), within the gap. The first goes at once. */
const RETRY_BASE = 500

interface Route {
  resume: () => void
  abort: (reason?: Error) => void
}

function noop (): void {}

/** An event stream whose upstream may be replaced mid-way; the client's response sees one stream. */
export class ResumableEventStream extends EventStreamBody implements ResumeTarget {
  private readonly events = new EventLog()
  private readonly route: Route
  private attempt: ResumeAttempt | null = null
  private timer: NodeJS.Timeout | null = null
  private inGap = false
  private gapStart = 0
  private gapEnd = 0
  /** Resume requests sent since an event was last relayed. */
  private tries = 0

  constructor (resume: () => void, abort: (reason?: Error) => void, private readonly call: UpstreamCall, private readonly state: CallResume,
    private readonly settings: SseResumeSettings) {
    // The upstream under the stream changes: reading and cancelling go to the current one.
    const route: Route = { resume, abort }
    super(() => route.resume(), (reason) => route.abort(reason))
    this.route = route
  }

  override deliver (chunk: Buffer): boolean {
    if (this.drained || this.destroyed) return true
    const events = this.events.take(chunk)
    if (events === null) return this.readableLength < this.readableHighWaterMark
    this.tries = 0
    return super.deliver(events)
  }

  override complete (): void {
    if (this.settings.resumeOn === 'any-end' && !this.drained && !this.destroyed && !this.events.torn) {
      this.cut(null)
      return
    }
    this.events.dropPartial()
    super.complete()
  }

  override fail (err: Error): void {
    // Half an event already went out (MAX_HELD): cut, as without resume.
    if (this.drained || this.destroyed || this.events.torn) super.fail(err)
    else this.cut(err)
  }

  override endAtBoundary (retry: Buffer | null): void {
    super.endAtBoundary(retry)
    if (this.drained) this.stop()
  }

  /** The call's signal (the client left, the deadline passed): no more resuming. */
  abort (reason: Error): void {
    this.stop()
    if (this.destroyed || this.readableEnded) return
    if ((reason as { code?: unknown }).code === 'FST_STREAMLINE_CLIENT_DISCONNECTED') this.destroy()
    else super.fail(reason)
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    this.stop()
    super._destroy(err, callback)
  }

  /** The upstream's response ended (`err` null: cleanly): resume, or end the client's stream. */
  private cut (err: Error | null): void {
    this.events.dropPartial()
    this.attempt = null
    this.route.resume = noop
    this.route.abort = noop
    if (!this.mayResume()) {
      this.giveUp(err)
      return
    }
    this.call.signal.attempt = this
    if (!this.inGap) {
      this.inGap = true
      // Any replica but the one that just cut, then none tried twice in this gap while others are left.
      this.call.tried = null
      this.gapStart = performance.now()
      this.gapEnd = this.gapStart + this.settings.gap
    }
    if (this.tries === 0) {
      this.arm(this.gapEnd)
      this.send()
    } else {
      this.retryLater()
    }
  }

  private mayResume (): boolean {
    return !this.call.signal.aborted && this.events.lastId !== '' && this.tries < this.settings.attempts &&
      this.state.remaining(this.call.request) > 0
  }

  /** Sends the next resume request. */
  private send (): void {
    const { agent, gates, options } = this.state
    if (agent === null || options === null) {
      this.giveUp(null)
      return
    }
    this.tries++
    const attempt = new ResumeAttempt(this, this.tries, this.call.pool)
    const sent = resumeRequest(options, this.call, LAST_EVENT_ID, { 'last-event-id': this.events.lastId })
    this.attempt = attempt
    if (this.call.pool !== null) {
      const replica = aimAtReplica(this.call, sent)
      if (replica instanceof Error) {
        this.attemptFailed(attempt)
        return
      }
      attempt.replica = replica
    }
    if (gates === null) agent.dispatch(sent, attempt)
    else gates.dispatch(agent, sent, attempt, this.call.signal)
  }

  /** A resume request failed before its head: another within the gap, or the end. */
  attemptFailed (attempt: ResumeAttempt): void {
    if (this.attempt !== attempt) return
    this.attempt = null
    if (this.mayResume()) this.retryLater()
    else this.giveUp(null)
  }

  /** A resume request was answered with something else than an event stream: a clean end. */
  refused (attempt: ResumeAttempt): void {
    if (this.attempt !== attempt) return
    this.attempt = null
    this.giveUp(null)
  }

  /** A resume request's event stream: relayed from here on, its replayed events dropped. */
  accept (attempt: ResumeAttempt, statusCode: number, headers: ResumeHeaders, resume: () => void, abort: (reason?: Error) => void): boolean {
    // Only an event stream goes on: anything else (a 404, a 500, JSON) ends the client's stream.
    if (statusCode !== 200 || !isEventStreamType(headers['content-type'])) return false
    if (this.attempt !== attempt || this.destroyed || this.drained) return false
    const gapMs = performance.now() - this.gapStart
    this.clearTimer()
    this.inGap = false
    this.route.resume = resume
    this.route.abort = abort
    this.resumes++
    this.events.deduplicate = true
    if (streamResumed.hasSubscribers) {
      const { call } = this
      const message: StreamResumedMessage = { request: call.request, attempt: attempt.number, lastEventId: this.events.lastId, gapMs, upstream: call.replica?.origin ?? call.url.origin }
      streamResumed.publish(message)
    }
    return true
  }

  /** Whether `attempt` is the one relayed now. */
  relays (attempt: ResumeAttempt): boolean {
    return this.attempt === attempt && !this.inGap
  }

  private retryLater (): void {
    this.arm(Math.min(performance.now() + RETRY_BASE * 2 ** (this.tries - 1), this.gapEnd))
  }

  private arm (at: number): void {
    this.clearTimer()
    this.timer = setTimeout(onTimer, Math.max(0, at - performance.now()), this)
  }

  /** The gap's timer: the gap is over, or a retry is due. */
  timerFired (): void {
    this.timer = null
    if (performance.now() >= this.gapEnd - 1) {
      this.attempt?.cancel(new errors.RequestAbortedError())
      this.attempt = null
      this.giveUp(null)
      return
    }
    this.arm(this.gapEnd)
    if (this.attempt === null) this.send()
  }

  /**
   * No more resuming. A stream never resumed and cut by an error is cut for the client too, as
   * without `sseResume`; once resuming began, the client's stream ends cleanly at an event boundary.
   */
  private giveUp (err: Error | null): void {
    const resuming = this.inGap || this.resumes > 0
    this.stop()
    if (this.destroyed || this.readableEnded) return
    if (err !== null && !resuming) super.fail(err)
    else super.complete()
  }

  private stop (): void {
    this.clearTimer()
    this.inGap = false
    const attempt = this.attempt
    this.attempt = null
    attempt?.cancel(new errors.RequestAbortedError())
    if (this.call.signal.attempt === this) this.call.signal.attempt = null
  }

  private clearTimer (): void {
    if (this.timer === null) return
    clearTimeout(this.timer)
    this.timer = null
  }
}

function onTimer (stream: ResumableEventStream): void {
  stream.timerFired()
}

/** The header a resume request replaces. */
const LAST_EVENT_ID = new Set(['last-event-id'])
