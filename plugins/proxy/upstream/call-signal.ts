/** What the call's signal stops: the attempt in flight (the upstream handler). */
export interface Abortable {
  abort: (reason: Error) => void
}

/**
 * The cancellation of one proxied request. It reaches the attempt in flight directly: an
 * AbortController per request, with undici adding and removing its EventTarget listener on every
 * attempt, was about 5 % of the proxy's CPU on a small GET, and an EventEmitter still costs a
 * listener array and its removal.
 */
export class CallSignal {
  aborted = false
  reason: Error | undefined = undefined
  /** Set by the upstream handler while its attempt is in flight. */
  attempt: Abortable | null = null

  abort (reason: Error): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    this.attempt?.abort(reason)
  }
}
