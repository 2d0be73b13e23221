import type { Replica } from './replica.js'

// Passive health, as Envoy's outlier detection: a replica that fails several requests in a row
// is ejected for a while, longer each time, and comes back by itself when that time is over.
// A failure is what says the replica, not the application, is in trouble: no connection, a
// reset or a timeout before the response head, or a 502/503/504 from it (an application's
// 500 is an answer). One timer per ejected replica brings it back; none per request.

export interface OutlierSettings {
  /** Failures in a row that eject a replica. Default 5. */
  consecutiveFailures: number
  /** ms of the first ejection; the n-th lasts n times this. Default 30000. */
  baseEjection: number
  /** Longest ejection, ms. Default 300000. */
  maxEjection: number
  /** Most of the pool ejected at once, in percent (at least one replica). Default 50. */
  maxEjectionPercent: number
}

/** What the detector asks of its pool. */
export interface EjectionHost {
  /** Whether one more replica may be ejected now (maxEjectionPercent). */
  mayEject: () => boolean
  ejected: (replica: Replica, failures: number, until: number) => void
  restored: (replica: Replica) => void
}

export class OutlierDetection {
  private readonly timers = new Set<NodeJS.Timeout>()

  constructor (private readonly settings: OutlierSettings, private readonly host: EjectionHost) {}

  failed (replica: Replica): void {
    replica.failures++
    if (replica.failures < this.settings.consecutiveFailures || replica.ejectedUntil !== 0 || replica.leaving) return
    if (!this.host.mayEject()) return
    const { baseEjection, maxEjection } = this.settings
    replica.ejections++
    const duration = Math.min(baseEjection * replica.ejections, maxEjection)
    replica.ejectedUntil = performance.now() + duration
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      this.restore(replica)
    }, duration)
    // An ejection never keeps the process alive.
    timer.unref()
    this.timers.add(timer)
    this.host.ejected(replica, replica.failures, Date.now() + duration)
  }

  /** An answer that is not a failure ends the run. */
  succeeded (replica: Replica): void {
    replica.failures = 0
  }

  close (): void {
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
  }

  private restore (replica: Replica): void {
    replica.ejectedUntil = 0
    // Back on probation: the next failure run ejects it again, for longer, unless it serves
    // a whole maximum ejection time first.
    replica.failures = 0
    const decay = setTimeout(() => {
      this.timers.delete(decay)
      if (replica.ejectedUntil === 0 && replica.ejections > 0) replica.ejections--
    }, this.settings.maxEjection)
    decay.unref()
    this.timers.add(decay)
    this.host.restored(replica)
  }
}
