import { errors } from 'undici'
import type { ResumedFrom } from '../../../lib/diagnostics.js'
import type { UpstreamCall } from './call.js'
import { UpstreamBody } from './body.js'
import type { ResumeHeaders } from './resume-attempt.js'
import { ResumeGap, type ResumableBody, type Route } from './resume-gap.js'
import type { CallResume, DownloadResumeSettings } from './sse-resume-options.js'

// `resumeDownloads`: a GET download cut mid-body by its upstream goes on from a new request for
// the rest (`Range: bytes=N-`, `If-Match: <etag>`), to another replica when the pool has one.
// Only a 206 for exactly the rest of the same representation continues the body; anything else
// cuts the client's response as without resume: never a wrong byte. As undici's RetryHandler
// checks its own resumed bodies. The gap between the cut and the rest: resume-gap.ts.

/** Whether a response may be resumed: a 200 with a strong ETag, `Accept-Ranges: bytes` and a length. */
export function mayResumeDownload (statusCode: number, headers: ResumeHeaders): boolean {
  const etag = headers.etag
  const ranges = headers['accept-ranges']
  return statusCode === 200 && typeof etag === 'string' && !etag.startsWith('W/') && typeof ranges === 'string' &&
    ranges.split(',').some(unit => unit.trim().toLowerCase() === 'bytes') && Number(headers['content-length']) > 0
}

/** A download whose upstream may be replaced mid-body by one sending the rest. */
export class ResumableDownload extends UpstreamBody implements ResumableBody {
  readonly replacedHeaders = RANGE_HEADERS
  private received = 0
  private readonly total: number
  private readonly etag: string
  private readonly gap: ResumeGap
  /** What cut it last: the client's response is cut with it when resuming ends. */
  private lastError: Error | null = null

  constructor (resume: () => void, abort: (reason?: Error) => void, headers: ResumeHeaders,
    call: UpstreamCall, state: CallResume, settings: DownloadResumeSettings) {
    const route: Route = { resume, abort }
    super(() => route.resume(), (reason) => route.abort(reason))
    this.gap = new ResumeGap(this, route, call, state, settings)
    this.total = Number(headers['content-length'])
    this.etag = headers.etag as string
  }

  override deliver (chunk: Buffer): boolean {
    if (this.destroyed) return true
    this.received += chunk.length
    if (chunk.length > 0) this.gap.progressed()
    return super.deliver(chunk)
  }

  override fail (err: Error): void {
    this.lastError = err
    if (this.destroyed) super.fail(err)
    else this.gap.cut(err)
  }

  /** The call's signal (the client left, the deadline passed). */
  abort (reason: Error): void {
    this.gap.stop()
    if (this.destroyed) return
    if ((reason as { code?: unknown }).code === 'FST_STREAMLINE_CLIENT_DISCONNECTED') this.destroy()
    else super.fail(reason)
  }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    this.gap.stop()
    super._destroy(err, callback)
  }

  resumable (): boolean {
    return this.received < this.total
  }

  resumeHeaders (): Record<string, string> {
    return { range: `bytes=${this.received}-`, 'if-match': this.etag }
  }

  /** Exactly the rest of the same representation, or nothing (RFC 9110 §14.4). */
  takes (statusCode: number, headers: ResumeHeaders): boolean {
    if (statusCode === 206 && headers.etag === this.etag && headers['content-range'] === `bytes ${this.received}-${this.total - 1}/${this.total}`) return true
    this.lastError = new errors.ResponseError('the resumed download did not match', statusCode, { headers })
    return false
  }

  resumedFrom (): ResumedFrom {
    return { kind: 'download', offset: this.received }
  }

  /** No more resuming: the client's response is cut, as without resumeDownloads. */
  giveUp (err: Error | null): void {
    if (!this.destroyed) super.fail(err ?? this.lastError ?? new errors.RequestAbortedError())
  }
}

/** Headers a range request replaces. */
const RANGE_HEADERS = new Set(['range', 'if-match', 'if-range'])
