import type { FastifyReply, FastifyRequest } from 'fastify'
import { AsyncResource } from 'node:async_hooks'
import type { CheckQueue, QueueEntry } from './check-queue.js'
import type { DeadlineSettings } from './types.js'
import type { RequestDeadline } from './types.js'
import { joinListeners, tell, tellAll, type AbortListener, type AbortListeners } from './listeners.js'
import { bytesWritten, isEventStream, sentHeader } from './response-probes.js'

/** Where a watched request is: waiting for its headers, streaming its body, or finished with. */
export type WatchPhase = 'response' | 'stream' | 'done'

/**
 * The deadline of an opted-out route: shared by all of them, so they allocate nothing. Its
 * signal never aborts; each read gives a fresh one, so listeners added per request cannot
 * pile up on a shared signal.
 */
export const UNLIMITED: RequestDeadline = Object.freeze({
  get signal (): AbortSignal { return new AbortController().signal },
  expiresAt: Infinity,
  remaining: () => Infinity,
  streaming: false
})

/**
 * One request's deadline and the state its single timer needs. The AbortController is
 * created only when a handler reads `signal`: most in-app routes never do.
 *
 * One is built for every request of a watched route, so it stores no more than that needs:
 * times that follow from others are getters (V8 boxes each stored time, on every request).
 */
export class ActiveDeadline implements RequestDeadline, QueueEntry<ActiveDeadline> {
  readonly request: FastifyRequest
  readonly reply: FastifyReply
  readonly settings: DeadlineSettings
  readonly arrival: number
  /** ms from arrival until the response must have started: `expiresAt - arrival`. */
  readonly budget: number
  phase: WatchPhase
  /** Its own timer, once the route's first-check queue has handed it over (or a caller shortened its budget). */
  timer: NodeJS.Timeout | null = null
  queue: CheckQueue<ActiveDeadline> | null = null
  prev: ActiveDeadline | null = null
  next: ActiveDeadline | null = null
  /** Set by the route's onSend hook: headers are on their way, a 504 must not race them. */
  sending = false
  /** The response's progress count (`progress()`) at the last check, and when it last moved. */
  lastBytes: number
  lastProgressAt: number
  /** Bytes written that are not progress (see `writeFiller`): left out of the idle clock's count. */
  private fillerBytes = 0
  reason: Error | null = null
  /**
   * The async context the signal was first read in. Checks run from a timer shared by the
   * route's requests; code that listens to the signal gets its own request's context back
   * (AsyncLocalStorage), at the cost of one object, only for requests that use the signal.
   */
  scope: AsyncResource | null = null
  private controller: AbortController | null = null
  /** Internal listeners (the proxy's upstream call), told of the abort without an AbortController; a lone one is kept without an array. */
  private listeners: AbortListeners | null = null

  constructor (request: FastifyRequest, reply: FastifyReply, settings: DeadlineSettings, arrival: number, budget: number) {
    this.request = request
    this.reply = reply
    this.settings = settings
    this.arrival = arrival
    this.budget = budget
    this.phase = settings.streaming ? 'stream' : 'response'
    // Only a streaming route needs the byte count from arrival (reading it walks the socket's
    // buffer); other routes take it when their headers go out.
    this.lastBytes = settings.streaming ? this.progress() : 0
    this.lastProgressAt = arrival
  }

  get expiresAt (): number {
    return this.arrival + this.budget
  }

  /** Epoch ms at which the whole response must be over; Infinity when unlimited. */
  get lifetimeAt (): number {
    const max = this.settings.maxStreamDuration
    return max > 0 ? this.arrival + max : Infinity
  }

  get signal (): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController()
      this.scope = new AsyncResource('fastify-streamline.deadline')
      if (this.reason !== null) this.controller.abort(this.reason)
    }
    return this.controller.signal
  }

  remaining (): number {
    return Math.max(0, this.expiresAt - Date.now())
  }

  /**
   * What is left for the next hop: until the response head is sent, `remaining()`; after it, what
   * is left of the lifetime (`maxStreamDuration`; Infinity without one), which is what still
   * bounds a stream whose head went out long ago (a resumed event stream's new upstream request).
   */
  budgetLeft (): number {
    if (!this.reply.raw.headersSent) return this.remaining()
    const lifetimeAt = this.lifetimeAt
    return lifetimeAt === Infinity ? Infinity : Math.max(0, lifetimeAt - Date.now())
  }

  get streaming (): boolean {
    if (this.settings.streaming) return true
    const res = this.reply.raw
    return res.headersSent && (isEventStream(res) || sentHeader(res, 'content-length') === undefined)
  }

  /** The idle clock's measure: what the response wrote, less filler. */
  progress (): number {
    return bytesWritten(this.reply.raw) - this.fillerBytes
  }

  /**
   * Writes bytes that are not progress (the proxy's SSE heartbeats): they must not keep a stream
   * alive whose source went silent. Measured around the write rather than taken as the chunk's
   * length: over HTTP/1.1 the count is the socket's, chunked framing included, and the write
   * reaches it synchronously (to the socket or its buffer, which the count includes).
   */
  writeFiller (chunk: Buffer): boolean {
    const res = this.reply.raw
    const before = bytesWritten(res)
    const written = res.write(chunk)
    this.fillerBytes += bytesWritten(res) - before
    return written
  }

  /** Tells `listener` of the reason once, when this deadline aborts (at once if it has). */
  onAbort (listener: AbortListener): void {
    if (this.reason !== null) tell(listener, this.reason)
    else this.listeners = joinListeners(this.listeners ?? undefined, listener)
  }

  /** Aborts the signal once; later calls keep the first reason. */
  abort (reason: Error): void {
    if (this.reason !== null) return
    this.reason = reason
    this.controller?.abort(reason)
    const listeners = this.listeners
    this.listeners = null
    if (listeners !== null) tellAll(listeners, reason)
  }

  /** Stops watching: leaves the queue, clears the timer; the signal stays as it is. */
  stop (): void {
    this.phase = 'done'
    this.queue?.remove(this)
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }
}
