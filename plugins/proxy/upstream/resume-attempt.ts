import { errors, util, type Dispatcher } from 'undici'
import type { Replica } from './replica.js'
import type { UpstreamPool } from './pool.js'
import { FAILOVER_STATUS } from '../upstream-errors.js'
import type { UpstreamCall } from './call.js'

// One resume request (sent by resume-gap.ts for sse-resume.ts and download-resume.ts): undici's
// handler, which hands the answer's head to the gap, and its body once the stream took it.

export type ResumeHeaders = Record<string, string | string[] | undefined>

/** The gap a resume request answers (resume-gap.ts), and through it the stream it carries on. */
export interface ResumeTarget {
  /** Whether it takes this answer; from then on the attempt's body is its. */
  accept: (attempt: ResumeAttempt, statusCode: number, headers: ResumeHeaders, resume: () => void, abort: (reason?: Error) => void) => boolean
  /** An answer it did not take. */
  refused: (attempt: ResumeAttempt) => void
  /** No answer (a connect refused, a reset before the head). */
  attemptFailed: (attempt: ResumeAttempt) => void
  /** Whether `attempt` is the one relayed now. */
  relays: (attempt: ResumeAttempt) => boolean
  deliver: (chunk: Buffer) => boolean
  complete: () => void
  fail: (err: Error) => void
}

/** One resume request: undici's handler, feeding the stream once the stream took its head. */
export class ResumeAttempt implements Dispatcher.DispatchHandler {
  replica: Replica | null = null
  private abortRequest: ((reason?: Error) => void) | null = null
  private accepted = false
  private done = false

  constructor (private readonly stream: ResumeTarget, readonly number: number, private readonly pool: UpstreamPool | null) {}

  onConnect (abort: (reason?: Error) => void): void {
    // Cancelled while it waited for its connection: nothing written, the connection kept.
    if (this.done) throw new errors.RequestAbortedError()
    this.abortRequest = abort
  }

  cancel (reason: Error): void {
    if (this.done) return
    this.done = true
    this.release()
    this.abortRequest?.(reason)
  }

  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true
    if (this.done) return false
    const headers = util.parseHeaders(rawHeaders) as ResumeHeaders
    this.settle(FAILOVER_STATUS.has(statusCode))
    if (this.stream.accept(this, statusCode, headers, resume, (reason) => this.abortRequest?.(reason))) {
      this.accepted = true
      return true
    }
    this.done = true
    this.release()
    this.abortRequest?.(new errors.RequestAbortedError())
    this.stream.refused(this)
    return false
  }

  onData (chunk: Buffer): boolean {
    if (this.done || !this.stream.relays(this)) return true
    return this.stream.deliver(chunk)
  }

  onComplete (): void {
    this.release()
    if (this.done) return
    this.done = true
    if (this.stream.relays(this)) this.stream.complete()
  }

  onError (err: Error): void {
    if (!this.accepted && this.replica !== null && !this.done) this.settle(true)
    this.release()
    if (this.done) return
    this.done = true
    const stream = this.stream
    if (!this.accepted) stream.attemptFailed(this)
    // After the handlers already queued, as the first attempt's failure (handler.ts).
    else if (stream.relays(this)) queueMicrotask(() => stream.fail(err))
  }

  /** Passive health, as for any attempt (pool.ts). */
  private settle (failed: boolean): void {
    const { replica, pool } = this
    if (replica === null || pool === null) return
    if (failed) pool.failed(replica)
    else pool.succeeded(replica)
  }

  private release (): void {
    const { replica, pool } = this
    if (replica === null || pool === null) return
    this.replica = null
    pool.release(replica)
  }
}

/**
 * The first attempt's request again, for a resume: its method, path, timers and headers, less
 * those named in `replaced` (lower case), plus `replacements` and the budget left now.
 */
export function resumeRequest (first: Dispatcher.DispatchOptions, call: UpstreamCall, replaced: ReadonlySet<string>,
  replacements: Record<string, string>): Dispatcher.DispatchOptions {
  const headers: Record<string, string | string[]> = {}
  const given = first.headers as Record<string, string | string[]>
  for (const name of Object.keys(given)) if (!replaced.has(name.toLowerCase())) headers[name] = given[name]
  Object.assign(headers, replacements, call.budgetHeaders(call.request))
  const { headersTimeout, bodyTimeout } = first as { headersTimeout?: number, bodyTimeout?: number }
  const options: Dispatcher.DispatchOptions & { headersTimeout?: number, bodyTimeout?: number } = {
    origin: first.origin, path: first.path, method: first.method, headers, headersTimeout, bodyTimeout
  }
  return options
}
