import type { Dispatcher } from 'undici'
import type { Abortable, CallSignal } from './call-signal.js'

// undici's pool opens a new connection for every request that finds no free one, at once, even
// if the request is cancelled a moment later: over HTTP/2 a client can open streams and reset
// them in the same write (rapid reset), and each one used to cost the upstream a connect.
// This gate bounds the connects in flight to one origin. A request that finds the bound reached
// waits here, in order, until one of them has finished (the connection it made is then free or
// busy, and the next request may need a connect of its own); a request cancelled while waiting
// is answered at once and never reaches undici, so it costs the upstream nothing. Established
// connections are not capped: a long SSE stream holds one, and other requests must not wait for
// it. With connections warm nothing waits and the map is empty: the hot path is one size check.

/** Connects one origin may have in flight before further requests wait for one of them to finish. */
export const CONNECTS_IN_FLIGHT = 32

/** A request waiting for the gate; `abort` answers it at once (its call's signal reaches it). */
class Waiter implements Abortable {
  constructor (public dispatcher: Dispatcher | null, public options: Dispatcher.DispatchOptions | null,
    public handler: Dispatcher.DispatchHandler | null, readonly signal: CallSignal) {}

  abort (reason: Error): void {
    const { handler } = this
    this.dispatcher = this.options = this.handler = null
    handler?.onError?.(reason)
  }
}

/** One origin: its connects in flight, and the requests waiting for one to finish. */
class Gate {
  connecting = 0
  private waiting: Waiter[] = []
  private head = 0

  get idle (): boolean {
    return this.connecting === 0 && this.head === this.waiting.length
  }

  admits (limit: number): boolean {
    return this.connecting < limit && this.head === this.waiting.length
  }

  wait (waiter: Waiter): void {
    this.waiting.push(waiter)
    waiter.signal.attempt = waiter
  }

  /** Hands waiting requests to undici while the origin has room for another connect. */
  release (limit: number): void {
    while (this.connecting < limit && this.head < this.waiting.length) {
      const waiter = this.waiting[this.head++]
      const { dispatcher, options, handler, signal } = waiter
      if (signal.attempt === waiter) signal.attempt = null
      if (dispatcher === null || options === null || handler === null) continue
      if (signal.aborted) waiter.abort(signal.reason as Error)
      else dispatcher.dispatch(options, handler)
    }
    if (this.head === this.waiting.length) {
      this.waiting = []
      this.head = 0
    }
  }

  fail (err: Error): void {
    const waiting = this.waiting.slice(this.head)
    this.waiting = []
    this.head = 0
    for (const waiter of waiting) waiter.abort(err)
  }
}

/** The gates of one dispatcher (an Agent: one per origin; a Pool: its one origin). */
export class ConnectGates {
  private readonly gates = new Map<string, Gate>()

  constructor (private readonly limit = CONNECTS_IN_FLIGHT) {}

  /** Sends `options` through `dispatcher`, or queues it while its origin has `limit` connects in flight. */
  dispatch (dispatcher: Dispatcher, options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler, signal: CallSignal): void {
    const gate = this.gates.size === 0 ? undefined : this.gates.get(originKey(options.origin))
    if (gate === undefined || gate.admits(this.limit)) dispatcher.dispatch(options, handler)
    else gate.wait(new Waiter(dispatcher, options, handler, signal))
  }

  /** A connect to `origin` (`protocol//host`, as URL.origin spells it) starts; call the result when it has finished. */
  connecting (origin: string): () => void {
    let gate = this.gates.get(origin)
    if (gate === undefined) {
      gate = new Gate()
      this.gates.set(origin, gate)
    }
    gate.connecting++
    const started = gate
    let done = false
    return () => {
      if (done) return
      done = true
      started.connecting--
      started.release(this.limit)
      if (started.idle && this.gates.get(origin) === started) this.gates.delete(origin)
    }
  }

  /** The dispatcher is closing: waiting requests fail with `err` rather than wait for a connect. */
  fail (err: Error): void {
    for (const gate of this.gates.values()) gate.fail(err)
  }
}

function originKey (origin: Dispatcher.DispatchOptions['origin']): string {
  return typeof origin === 'string' ? origin : origin instanceof URL ? origin.origin : ''
}
