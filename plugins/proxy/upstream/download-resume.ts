import { errors, type Dispatcher } from 'undici'
import type { UpstreamCall } from './call.js'
import { UpstreamBody } from './body.js'
import { aimAtReplica } from './replica-attempt.js'
import type { CallResume, DownloadResumeSettings } from './sse-resume-options.js'
import { ResumeAttempt, resumeRequest, type ResumeHeaders, type ResumeTarget } from './resume-attempt.js'

// `resumeDownloads`: a GET download cut mid-body by its upstream goes on from a new request for
// the rest (`Range: bytes=N-`, `If-Match: <etag>`), to another replica when the pool has one.
// Only a 206 for exactly the rest of the same representation continues the body; anything else
// cuts the client's response as without resume: never a wrong byte. As undici's RetryHandler
// checks its own resumed bodies. One timer per download, only while it is cut.

const RETRY_BASE = 500

/** Whether a response may be resumed: a 200 with a strong ETag, `Accept-Ranges: bytes` and a length. */
export function mayResumeDownload (statusCode: number, headers: ResumeHeaders): boolean {
  const etag = headers.etag
  const ranges = headers['accept-ranges']
  return statusCode === 200 && typeof etag === 'string' && !etag.startsWith('W/') && typeof ranges === 'string' &&
    ranges.split(',').some(unit => unit.trim().toLowerCase() === 'bytes') && Number(headers['content-length']) > 0
}

interface Route {
  resume: () => void
  abort: (reason?: Error) => void
}

function noop (): void {}

export class ResumableDownload extends UpstreamBody implements ResumeTarget {
  private received = 0
  private readonly total: number
  private readonly etag: string
  private readonly route: Route
  private attempt: ResumeAttempt | null = null
  private timer: NodeJS.Timeout | null = null
  private inGap = false
  private gapEnd = 0
  private tries = 0
  private lastError: Error | null = null

  constructor (resume: () => void, abort: (reason?: Error) => void, headers: ResumeHeaders,
    private readonly call: UpstreamCall, private readonly state: CallResume, private readonly settings: DownloadResumeSettings) {
    const route: Route = { resume, abort }
    super(() => route.resume(), (reason) => route.abort(reason))
    this.route = route
    this.total = Number(headers['content-length'])
    this.etag = headers.etag as string
  }

  override deliver (chunk: Buffer): boolean {
    if (this.destroyed) return true
    this.received += chunk.length
    if (chunk.length > 0) this.tries = 0
    return super.deliver(chunk)
  }

  override fail (err: Error): void {
    this.lastError = err
    if (this.destroyed || this.call.signal.aborted || this.received >= this.total || this.tries >= this.settings.attempts ||
      this.state.remaining(this.call.request) <= 0 || this.state.agent === null) {
      this.giveUp()
      return
    }
    this.route.resume = noop
    this.route.abort = noop
    this.call.signal.attempt = this
    if (!this.inGap) {
      this.inGap = true
      this.gapEnd = performance.now() + this.settings.gap
      this.call.tried = null
    }
    if (this.tries === 0) {
      this.arm(this.gapEnd)
      this.send()
    } else {
      this.arm(Math.min(performance.now() + RETRY_BASE * 2 ** (this.tries - 1), this.gapEnd))
    }
  }

  /** The call's signal (the client left, the deadline passed). */
  abort (reason: Error): void {
    this.stop()
    if (this.destroyed) return
    if ((reason as { code?: unknown }).code === 'FST_STREAMLINE_CLIENT_DISCONNECTED') this.destroy()
    else super.fail(reason)
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    this.stop()
    super._destroy(err, callback)
  }

  accept (attempt: ResumeAttempt, statusCode: number, headers: ResumeHeaders, resume: () => void, abort: (reason?: Error) => void): boolean {
    if (this.attempt !== attempt || this.destroyed) return false
    // Exactly the rest of the same representation, or nothing (RFC 9110 §14.4).
    if (statusCode !== 206 || headers.etag !== this.etag || headers['content-range'] !== `bytes ${this.received}-${this.total - 1}/${this.total}`) return false
    this.clearTimer()
    this.inGap = false
    this.route.resume = resume
    this.route.abort = abort
    return true
  }

  refused (attempt: ResumeAttempt): void {
    if (this.attempt !== attempt) return
    this.attempt = null
    this.lastError = new errors.ResponseError('the resumed download did not match', 0, {})
    this.giveUp()
  }

  attemptFailed (attempt: ResumeAttempt): void {
    if (this.attempt !== attempt) return
    this.attempt = null
    if (this.tries < this.settings.attempts && !this.call.signal.aborted) this.arm(Math.min(performance.now() + RETRY_BASE * 2 ** (this.tries - 1), this.gapEnd))
    else this.giveUp()
  }

  relays (attempt: ResumeAttempt): boolean {
    return this.attempt === attempt && !this.inGap
  }

  timerFired (): void {
    this.timer = null
    if (performance.now() >= this.gapEnd - 1) {
      this.giveUp()
      return
    }
    this.arm(this.gapEnd)
    if (this.attempt === null) this.send()
  }

  private send (): void {
    const first = this.state.options as Dispatcher.DispatchOptions
    this.tries++
    const attempt = new ResumeAttempt(this, this.tries, this.call.pool)
    const options = resumeRequest(first, this.call, RANGE_HEADERS, { range: `bytes=${this.received}-`, 'if-match': this.etag })
    this.attempt = attempt
    if (this.call.pool !== null) {
      const replica = aimAtReplica(this.call, options)
      if (replica instanceof Error) {
        this.attemptFailed(attempt)
        return
      }
      attempt.replica = replica
    }
    const { agent, gates } = this.state
    if (gates === null) (agent as Dispatcher).dispatch(options, attempt)
    else gates.dispatch(agent as Dispatcher, options, attempt, this.call.signal)
  }

  /** No more resuming: the client's response is cut, as without resumeDownloads. */
  private giveUp (): void {
    this.stop()
    if (!this.destroyed) super.fail(this.lastError ?? new errors.RequestAbortedError())
  }

  private arm (at: number): void {
    this.clearTimer()
    this.timer = setTimeout(onTimer, Math.max(0, at - performance.now()), this)
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

function onTimer (download: ResumableDownload): void {
  download.timerFired()
}

/** Headers a range request replaces. */
const RANGE_HEADERS = new Set(['range', 'if-match', 'if-range'])
