import { AsyncResource } from 'node:async_hooks'

/** What a CheckQueue links: the entry carries its own links, so adding and removing allocate nothing. */
export interface QueueEntry<T extends QueueEntry<T>> {
  checkAt: number
  queue: CheckQueue<T> | null
  prev: T | null
  next: T | null
}

/**
 * The requests of one route waiting for their first check, in arrival order, under one timer.
 *
 * Every request of a route is first looked at the same time after its arrival, so arrival order
 * is check order: the timer only ever needs to be armed for the head. A `setTimeout` per request
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
  // Bound to the context the route was set up in: the timer is armed while some request is
  // running, and that request's AsyncLocalStorage must not leak into the checks of the others.
  private readonly fire = AsyncResource.bind((): void => this.runDue())

  /** `offset`: ms from arrival to the first check; `due`: called for each entry whose time has come. */
  constructor (readonly offset: number, private readonly due: (entry: T) => void) {}

  add (entry: T, arrival: number): void {
    entry.checkAt = arrival + this.offset
    entry.queue = this
    entry.prev = this.tail
    entry.next = null
    if (this.tail === null) this.head = entry
    else this.tail.next = entry
    this.tail = entry
    if (this.timer === null) this.arm(entry.checkAt - Date.now())
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
  }

  private runDue (): void {
    this.timer = null
    const now = Date.now()
    const due: T[] = []
    while (this.head !== null && this.head.checkAt <= now) {
      due.push(this.head)
      this.remove(this.head)
    }
    // Re-armed before the callbacks run: one that throws must not stall the rest of the queue.
    if (this.head !== null) this.arm(this.head.checkAt - now)
    for (const entry of due) this.due(entry)
  }

  private arm (delay: number): void {
    this.timer = setTimeout(this.fire, Math.max(0, delay))
    this.timer.unref()
  }
}
