import { AsyncResource } from 'node:async_hooks'

// Arrival stamps come in nearly in order (rounding, hooks of slightly different length): an entry
// may go this many places back from the tail before it is left to its own timer.
const MAX_STEPS_BACK = 4

/**
 * What a CheckQueue links: the entry carries its own links, so adding and removing allocate
 * nothing. Its check is due `offset` ms after its arrival, computed rather than stored.
 */
export interface QueueEntry<T extends QueueEntry<T>> {
  readonly arrival: number
  queue: CheckQueue<T> | null
  prev: T | null
  next: T | null
}

/**
 * The requests of one route waiting for their first check, in arrival order, under one timer.
 *
 * Every request of a route is first looked at the same time after its arrival, so arrival order
 * is check order: the timer only ever needs to be armed for the head, and a new entry almost
 * always goes at the tail. A `setTimeout` per request
 * costs far more at an ingress's rate: a Timeout object each, and Node's timer list for that
 * duration empties between requests and is rebuilt for almost every one (measured as the largest
 * part of the plugin's cost on a hello-world route).
 *
 * Removing an entry leaves the timer alone: it fires for a head that has gone, finds the next one
 * not yet due and re-arms, at most once per first-check period. The timer is unref'd: a request in
 * flight keeps the process alive through its socket, an idle queue must not.
 */
export class CheckQueue<T extends QueueEntry<T>> {
  private head: T | null = null
  private tail: T | null = null
  private timer: NodeJS.Timeout | null = null
  private timerAt = Infinity
  // Bound to the context the route was set up in: the timer is armed while some request is
  // running, and that request's AsyncLocalStorage must not leak into the checks of the others.
  private readonly fire = AsyncResource.bind((): void => this.runDue())

  /** `offset`: ms from arrival to the first check; `due`: called for each entry whose time has come. */
  constructor (readonly offset: number, private readonly due: (entry: T) => void) {}

  /**
   * Adds an entry in check order and returns true, or returns false when it belongs more than a
   * few places from the tail: its arrival was stamped long before it reached us (an app-level
   * hook awaited something), and the caller gives it a timer of its own rather than walk the queue.
   */
  add (entry: T): boolean {
    const arrival = entry.arrival
    let before = this.tail
    for (let steps = 0; before !== null && before.arrival > arrival; steps++) {
      if (steps === MAX_STEPS_BACK) return false
      before = before.prev
    }
    entry.queue = this
    entry.prev = before
    entry.next = before === null ? this.head : before.next
    if (before === null) this.head = entry
    else before.next = entry
    if (entry.next === null) this.tail = entry
    else entry.next.prev = entry
    const checkAt = arrival + this.offset
    if (checkAt < this.timerAt) this.arm(checkAt, Date.now())
    return true
  }

  remove (entry: T): void {
    if (entry.prev === null) this.head = entry.next
    else entry.prev.next = entry.next
    if (entry.next === null) this.tail = entry.prev
    else entry.next.prev = entry.prev
    entry.queue = entry.prev = entry.next = null
  }

  /** Stops the timer; entries still queued are left to their own close. */
  close (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.timerAt = Infinity
  }

  private runDue (): void {
    this.timer = null
    this.timerAt = Infinity
    const now = Date.now()
    const due: T[] = []
    while (this.head !== null && this.head.arrival + this.offset <= now) {
      due.push(this.head)
      this.remove(this.head)
    }
    // Re-armed before the callbacks run: one that throws must not stall the rest of the queue.
    if (this.head !== null) this.arm(this.head.arrival + this.offset, now)
    for (const entry of due) this.due(entry)
  }

  private arm (at: number, now: number): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timerAt = at
    this.timer = setTimeout(this.fire, Math.max(0, at - now))
    this.timer.unref()
  }
}
