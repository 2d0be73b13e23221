import { request as sendRequest, type Dispatcher } from 'undici'
import type { Replica } from './replica.js'

// Active health checks: a GET to each replica every `interval`, once per pool (not per request).
// A replica that answers non-2xx, or not within `timeout` (a process that accepts connections
// and then hangs), `unhealthyThreshold` times in a row leaves the rotation until it passes
// `healthyThreshold` checks in a row. The interval timer never keeps the process alive, and
// close() stops it and cancels the checks under way.

export interface HealthCheckSettings {
  /** Path (and query) checked, e.g. `/healthz`. */
  path: string
  /** ms between two rounds. Default 10000. */
  interval: number
  /** ms a check may take. Default 2000. */
  timeout: number
  /** Passing checks in a row that bring a replica back. Default 2. */
  healthyThreshold: number
  /** Failing checks in a row that take it out. Default 2. */
  unhealthyThreshold: number
}

export class HealthChecker {
  private timer: NodeJS.Timeout | null = null
  private readonly stop = new AbortController()
  /** Replicas with a check under way: a round never starts a second one beside it. */
  private readonly checking = new Set<Replica>()

  constructor (private readonly settings: HealthCheckSettings, private readonly replicas: () => readonly Replica[],
    private readonly dispatcher: Dispatcher, private readonly changed: (replica: Replica) => void) {}

  start (): void {
    if (this.timer !== null) return
    this.timer = setInterval(() => { this.round().catch(noop) }, this.settings.interval)
    this.timer.unref()
    this.round().catch(noop)
  }

  close (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
    this.stop.abort()
  }

  private async round (): Promise<void> {
    await Promise.all(this.replicas().filter(replica => !replica.leaving && !this.checking.has(replica)).map(async replica => {
      this.checking.add(replica)
      const passed = await this.check(replica)
      this.checking.delete(replica)
      if (!this.stop.signal.aborted) this.record(replica, passed)
    }))
  }

  private async check (replica: Replica): Promise<boolean> {
    const signal = AbortSignal.any([this.stop.signal, AbortSignal.timeout(this.settings.timeout)])
    try {
      const { statusCode, body } = await sendRequest(replica.origin + this.settings.path, {
        dispatcher: this.dispatcher, method: 'GET', headers: { host: replica.host }, signal
      })
      await body.dump({ signal, limit: 64 * 1024 })
      return statusCode >= 200 && statusCode < 300
    } catch {
      return false
    }
  }

  private record (replica: Replica, passed: boolean): void {
    if (passed === replica.healthy) {
      replica.checkStreak = 0
      return
    }
    replica.checkStreak++
    const { healthyThreshold, unhealthyThreshold } = this.settings
    if (replica.checkStreak < (passed ? healthyThreshold : unhealthyThreshold)) return
    replica.checkStreak = 0
    replica.healthy = passed
    this.changed(replica)
  }
}

// round() never rejects (each check catches its own failure); the catch only satisfies the linter.
function noop (): void {}
