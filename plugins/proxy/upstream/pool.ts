import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { upstreamEjected, upstreamHealth, upstreamRestored, upstreamSet } from '../../../lib/diagnostics.js'
import { Replica, type ReplicaSpec } from './replica.js'
import { policyFor, type Policy } from './balance.js'
import type { BalanceOption } from '../types.js'
import { OutlierDetection, type OutlierSettings } from './outlier.js'
import { HealthChecker, type HealthCheckSettings } from './health-check.js'
import { ReplicaResolver, type ResolvedMember, type ResolveSettings } from './resolve.js'

// A registration's upstream when it is several replicas: the set, the rotation the balancer
// picks from, and the passive and active health that take replicas out of it and back.
//
// Why not undici's BalancedPool: it has no status-based health (a replica answering 503 keeps
// its share), a dead replica keeps weight 1 and keeps getting traffic, there is no ejection
// timing and no active check, and the caller cannot tell which replica served (undici #4839).
// The pool only chooses: the request still goes out through the registration's undici Agent,
// which keeps one undici Pool of connections per origin, so each replica has its own pool of
// keep-alive connections and a replica that leaves keeps its open streams until they end.

/** What a failed attempt may be sent again with (retry.ts). */
export interface FailoverSettings {
  /** Attempts after the first. */
  retries: number
  /** Largest request body held for sending again (bytes). */
  bodyLimit: number
  /** POST and PATCH are sent again after they reached a replica. */
  nonIdempotent: boolean
}

export interface PoolSettings {
  /** The Host of the URL reply-from is given (the first replica's); each attempt gets its replica's. */
  name: string
  /** The replicas given (before any DNS expansion); empty when a `resolve` function gives them. */
  replicas: ReplicaSpec[]
  /** `http:` or `https:`: one scheme per pool. */
  protocol: string
  resolve: ResolveSettings | null
  balance: BalanceOption
  /** null: passive health off. */
  outlier: OutlierSettings | null
  healthCheck: HealthCheckSettings | null
  failover: FailoverSettings
}

/** Below this share of replicas in rotation, every replica is used again (Envoy's panic threshold). */
const PANIC_PERCENT = 50

export class UpstreamPool {
  /** Every replica, those leaving included, by origin. */
  private readonly members = new Map<string, Replica>()
  /** The replicas new requests may go to; rebuilt when one leaves or comes back, not per request. */
  private rotation: Replica[] = []
  private readonly policy: Policy
  private readonly outlier: OutlierDetection | null
  private checker: HealthChecker | null = null
  private readonly resolver: ReplicaResolver | null
  readonly name: string
  readonly failover: FailoverSettings

  constructor (private readonly settings: PoolSettings, private readonly log: FastifyBaseLogger) {
    this.name = settings.name
    this.failover = settings.failover
    this.policy = policyFor(settings.balance)
    this.outlier = settings.outlier === null ? null : new OutlierDetection(settings.outlier, this)
    this.resolver = settings.resolve === null
      ? null
      : new ReplicaResolver(settings.resolve, settings.replicas, members => this.apply(members), err => this.log.warn({ err }, 'proxy: resolving the upstream replicas failed'))
    if (settings.resolve === null || !settings.resolve.dns) this.setReplicas(settings.replicas.map(({ url, weight }) => ({ origin: new URL(url).origin, host: new URL(url).host, weight })))
  }

  /** Resolves the set (when it is resolved) and starts the health checks; before the server serves. */
  async start (dispatcher: Dispatcher): Promise<void> {
    if (this.resolver !== null) await this.resolver.start()
    if (this.settings.healthCheck !== null) {
      this.checker = new HealthChecker(this.settings.healthCheck, () => [...this.members.values()], dispatcher, replica => this.healthChanged(replica))
      this.checker.start()
    }
  }

  close (): void {
    this.resolver?.close()
    this.checker?.close()
    this.outlier?.close()
  }

  /** The replica for the next attempt, or null when the pool has none. */
  choose (request: FastifyRequest, tried: readonly Replica[] | null): Replica | null {
    const { rotation } = this
    if (rotation.length === 0) return null
    return rotation.length === 1 && tried === null ? rotation[0] : this.policy(rotation, request, tried)
  }

  /** Whether a replica this request has not tried is in rotation (for failover). */
  hasUntried (tried: readonly Replica[]): boolean {
    return this.rotation.some(replica => !tried.includes(replica))
  }

  /** An attempt or a tunnel starts on `replica`. */
  acquire (replica: Replica): void {
    replica.inflight++
    replica.served++
  }

  /** That attempt's response, or that tunnel, is over. */
  release (replica: Replica): void {
    replica.inflight--
    if (replica.leaving && replica.inflight === 0 && this.members.get(replica.origin) === replica) this.members.delete(replica.origin)
  }

  /** The replica answered (any status but 502, 503, 504). */
  succeeded (replica: Replica): void {
    this.outlier?.succeeded(replica)
  }

  /** The replica failed: no connection, a reset or timeout before the head, or a 502/503/504. */
  failed (replica: Replica): void {
    this.outlier?.failed(replica)
  }

  /** Every replica and its state, for metrics and tests. */
  snapshot (): Array<{ origin: string, host: string, state: string, inflight: number, served: number, ejections: number }> {
    return [...this.members.values()].map(({ origin, host, state, inflight, served, ejections }) => ({ origin, host, state, inflight, served, ejections }))
  }

  // The outlier detector's host (outlier.ts).

  mayEject (): boolean {
    let ejected = 0
    let serving = 0
    for (const replica of this.members.values()) {
      if (replica.leaving) continue
      serving++
      if (replica.ejectedUntil !== 0) ejected++
    }
    const most = Math.max(1, Math.floor(serving * (this.settings.outlier?.maxEjectionPercent ?? 0) / 100))
    return ejected < most
  }

  ejected (replica: Replica, failures: number, until: number): void {
    this.log.warn({ upstream: replica.origin, failures, until: new Date(until).toISOString() }, 'proxy: upstream replica ejected')
    this.rebuild()
    if (upstreamEjected.hasSubscribers) upstreamEjected.publish({ upstream: replica.origin, reason: 'consecutive-failures', failures, until })
  }

  restored (replica: Replica): void {
    this.log.info({ upstream: replica.origin }, 'proxy: upstream replica back in rotation')
    this.rebuild()
    if (upstreamRestored.hasSubscribers) upstreamRestored.publish({ upstream: replica.origin })
  }

  private healthChanged (replica: Replica): void {
    this.log[replica.healthy ? 'info' : 'warn']({ upstream: replica.origin, healthy: replica.healthy }, 'proxy: upstream health check changed')
    this.rebuild()
    if (upstreamHealth.hasSubscribers) upstreamHealth.publish({ upstream: replica.origin, healthy: replica.healthy })
  }

  private apply (members: ResolvedMember[]): void {
    const foreign = members.find(member => !member.origin.startsWith(this.settings.protocol + '//'))
    if (foreign !== undefined) throw new Error(`a resolved replica is not ${this.settings.protocol}: one scheme per pool`)
    this.setReplicas(members)
  }

  /** The set is now `members`: new ones join, absent ones leave (their open work runs on). */
  private setReplicas (members: ResolvedMember[]): void {
    const next = new Set(members.map(member => member.origin))
    let changed = false
    for (const member of members) {
      const known = this.members.get(member.origin)
      if (known !== undefined && !known.leaving && known.weight === member.weight) continue
      if (known !== undefined && known.inflight > 0 && known.weight === member.weight) known.leaving = false
      else this.members.set(member.origin, new Replica(member.origin, member.host, member.weight))
      changed = true
    }
    for (const replica of this.members.values()) {
      if (next.has(replica.origin) || replica.leaving) continue
      replica.leaving = true
      changed = true
      if (replica.inflight === 0) this.members.delete(replica.origin)
    }
    if (!changed) return
    this.rebuild()
    if (upstreamSet.hasSubscribers) upstreamSet.publish({ upstreams: members.map(member => member.origin) })
  }

  private rebuild (): void {
    const live = [...this.members.values()].filter(replica => !replica.leaving)
    const serving = live.filter(replica => replica.serving)
    // Too few left: spreading over all of them beats crushing the few (or answering none).
    this.rotation = serving.length * 100 < live.length * PANIC_PERCENT ? live : serving
  }
}
