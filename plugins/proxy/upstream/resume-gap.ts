import { errors } from 'undici'
import { streamResumed, type StreamResumedMessage, type ResumedFrom } from '../../../lib/diagnostics.js'
import type { UpstreamCall } from './call.js'
import { aimAtReplica } from './replica-attempt.js'
import { ResumeAttempt, resumeRequest, type ResumeHeaders, type ResumeTarget } from './resume-attempt.js'
import type { CallResume } from './sse-resume-options.js'

// The gap of a resumable body (sse-resume.ts, download-resume.ts): from the moment its upstream
// cut it to a resume request's answer it takes. The gap sends the resume requests, one at a
// time, to another replica when the pool has one, and hands the answer's head to the body to
// judge. One timer per body, only while it is cut: the gap's budget, which also paces retries.

/** The wait before the n-th retry of a gap (n >= 1): RETRY_BASE * 2^(n-1), within the gap. The first goes at once. */
const RETRY_BASE = 500

/** Where the body's reads and cancels go: the current upstream's, swapped at each resume. */
export interface Route {
  resume: () => void
  abort: (reason?: Error) => void
}

/** A body that resume requests carry on. */
export interface ResumableBody {
  /** Times it was resumed (for the stream:end channel). */
  resumes: number
  readonly destroyed: boolean
  /** Whether it has something to resume from (an event id, bytes left). */
  resumable: () => boolean
  /** Headers a resume request replaces (lower case), and those it sends instead. */
  readonly replacedHeaders: ReadonlySet<string>
  resumeHeaders: () => Record<string, string>
  /** Whether it goes on from this answer. */
  takes: (statusCode: number, headers: ResumeHeaders) => boolean
  /** Where it went on from, for the stream:resumed channel. */
  resumedFrom: () => ResumedFrom
  /** No more resuming. `err`: the cut's error, when none was tried. */
  giveUp: (err: Error | null) => void
  abort: (reason: Error) => void
  deliver: (chunk: Buffer) => boolean
  complete: () => void
  fail: (err: Error) => void
}

function noop (): void {}

export class ResumeGap implements ResumeTarget {
  private attempt: ResumeAttempt | null = null
  private timer: NodeJS.Timeout | null = null
  private inGap = false
  private start = 0
  private end = 0
  /** Resume requests sent since the body last made progress. */
  private tries = 0

  constructor (private readonly body: ResumableBody, private readonly route: Route, private readonly call: UpstreamCall,
    private readonly state: CallResume, private readonly settings: { attempts: number, gap: number }) {}

  /** The body relayed something new: the next cut may try `attempts` times again. */
  progressed (): void {
    this.tries = 0
  }

  /** The upstream under the body ended (`err` null: cleanly): a resume request, or the end. */
  cut (err: Error | null): void {
    this.attempt = null
    this.route.resume = noop
    this.route.abort = noop
    if (!this.mayResume()) {
      this.giveUp(err)
      return
    }
    this.call.signal.attempt = this.body
    if (!this.inGap) {
      this.inGap = true
      // Any replica but the one that just cut, then none tried twice in this gap while others are left.
      this.call.tried = null
      this.start = performance.now()
      this.end = this.start + this.settings.gap
    }
    if (this.tries === 0) {
      this.arm(this.end)
      this.send()
    } else {
      this.retryLater()
    }
  }

  accept (attempt: ResumeAttempt, statusCode: number, headers: ResumeHeaders, resume: () => void, abort: (reason?: Error) => void): boolean {
    if (this.attempt !== attempt || this.body.destroyed || !this.body.takes(statusCode, headers)) return false
    const gapMs = performance.now() - this.start
    this.clearTimer()
    this.inGap = false
    this.route.resume = resume
    this.route.abort = abort
    this.body.resumes++
    if (streamResumed.hasSubscribers) {
      const { call } = this
      const message: StreamResumedMessage = { request: call.request, attempt: attempt.number, gapMs, upstream: call.replica?.origin ?? call.url.origin, ...this.body.resumedFrom() }
      streamResumed.publish(message)
    }
    return true
  }

  refused (attempt: ResumeAttempt): void {
    if (this.attempt !== attempt) return
    this.attempt = null
    this.giveUp(null)
  }

  attemptFailed (attempt: ResumeAttempt): void {
    if (this.attempt !== attempt) return
    this.attempt = null
    if (this.mayResume()) this.retryLater()
    else this.giveUp(null)
  }

  relays (attempt: ResumeAttempt): boolean {
    return this.attempt === attempt && !this.inGap
  }

  deliver (chunk: Buffer): boolean {
    return this.body.deliver(chunk)
  }

  complete (): void {
    this.body.complete()
  }

  fail (err: Error): void {
    this.body.fail(err)
  }

  /** The gap's timer: the gap is over, or a retry is due. */
  timerFired (): void {
    this.timer = null
    if (performance.now() >= this.end - 1) {
      this.giveUp(null)
      return
    }
    this.arm(this.end)
    if (this.attempt === null) this.send()
  }

  /** No more resuming: the timer and the pending resume request are gone. */
  stop (): void {
    this.clearTimer()
    this.inGap = false
    const attempt = this.attempt
    this.attempt = null
    attempt?.cancel(new errors.RequestAbortedError())
    if (this.call.signal.attempt === this.body) this.call.signal.attempt = null
  }

  private mayResume (): boolean {
    const { state, call } = this
    return !call.signal.aborted && this.tries < this.settings.attempts && state.agent !== null && state.options !== null &&
      this.body.resumable() && state.remaining(call.request) > 0
  }

  private giveUp (err: Error | null): void {
    this.stop()
    this.body.giveUp(err)
  }

  private send (): void {
    const { agent, options } = this.state
    if (agent === null || options === null) return
    this.tries++
    const attempt = new ResumeAttempt(this, this.tries, this.call.pool)
    const sent = resumeRequest(options, this.call, this.body.replacedHeaders, this.body.resumeHeaders())
    this.attempt = attempt
    if (this.call.pool !== null) {
      const replica = aimAtReplica(this.call, sent)
      if (replica instanceof Error) {
        this.attemptFailed(attempt)
        return
      }
      attempt.replica = replica
    }
    // Not through the connect gate (connect-gate.ts): that bounds connects a client can cause
    // and cancel at will; a resume request is caused by the upstream's cut, at most one in flight
    // per open stream. Queued behind the gate, the 500 resumes of a killed replica's streams took
    // 16 rounds of a busy event loop to start: p99 gap 610 ms against 350 ms straight (bench/resume.js).
    agent.dispatch(sent, attempt)
  }

  private retryLater (): void {
    this.arm(Math.min(performance.now() + RETRY_BASE * 2 ** (this.tries - 1), this.end))
  }

  private arm (at: number): void {
    this.clearTimer()
    this.timer = setTimeout(onTimer, Math.max(0, at - performance.now()), this)
  }

  private clearTimer (): void {
    if (this.timer === null) return
    clearTimeout(this.timer)
    this.timer = null
  }
}

function onTimer (gap: ResumeGap): void {
  gap.timerFired()
}
