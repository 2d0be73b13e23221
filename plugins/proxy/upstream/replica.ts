// One member of an upstream pool: where to connect, what to call it, and the state the
// balancer and the health checks read. State is per process, as in nginx's workers: each
// ingress replica learns for itself which upstream replicas fail.

/** A replica as given or resolved: its URL and its share of the traffic. */
export interface ReplicaSpec {
  url: string
  weight: number
}

/** Why a replica is out of the rotation, if it is. */
export type ReplicaState = 'serving' | 'ejected' | 'unhealthy' | 'leaving'

export class Replica {
  /** Where undici connects: scheme://address:port. */
  readonly origin: string
  /** The Host header the replica gets (the name given, before any DNS expansion). */
  readonly host: string
  /** scheme://Host: how the replica names itself in a Location header. */
  readonly named: string
  readonly weight: number
  /** Requests, event streams and tunnels it holds open now. */
  inflight = 0
  /** Requests and tunnels sent to it so far. */
  served = 0
  /** Failures in a row (passive health); reset by any answer that is not a failure. */
  failures = 0
  /** How many times it was ejected; the next ejection lasts that many base ejection times. */
  ejections = 0
  /** performance.now() until which it is ejected; 0: not ejected. */
  ejectedUntil = 0
  /** The active health check's verdict (true until a check says otherwise). */
  healthy = true
  /** Checks in a row that disagree with `healthy`. */
  checkStreak = 0
  /** It left the replica set: no new requests, its open streams and tunnels run on. */
  leaving = false
  /** For the smooth weighted round robin. */
  current = 0

  constructor (origin: string, host: string, weight: number) {
    this.origin = origin
    this.host = host
    this.named = origin.slice(0, origin.indexOf('//') + 2) + host
    this.weight = weight
  }

  /** Whether new requests may go to it. */
  get serving (): boolean {
    return !this.leaving && this.ejectedUntil === 0 && this.healthy
  }

  get state (): ReplicaState {
    if (this.leaving) return 'leaving'
    if (this.ejectedUntil !== 0) return 'ejected'
    return this.healthy ? 'serving' : 'unhealthy'
  }
}
