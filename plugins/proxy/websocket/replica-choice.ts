import type { FastifyRequest } from 'fastify'
import type { UpstreamPool } from '../upstream/pool.js'
import type { Replica } from '../upstream/replica.js'
import type { UpstreamRequestHeaders } from '../types.js'
import { FAILOVER_STATUS, neverReachedUpstream } from '../upstream-errors.js'

/**
 * Which replica of a pool one handshake goes to, and the pool's books for it: the replica is
 * counted in flight from the handshake until it fails or its tunnel ends (least-request sees
 * open tunnels), and its answer counts for passive health as a plain request's does. A
 * handshake that never reached its replica (no connection, no TLS session) goes to one it has
 * not tried, up to the pool's `retries`, before the client sees anything.
 */
export class ReplicaChoice {
  /** The replica holding the handshake, then its tunnel; null before the first and once released. */
  private replica: Replica | null = null
  private tried: Replica[] | null = null
  /** The Host header the handshake names now: the pool's, then its replica's. */
  private named: string

  constructor (private readonly pool: UpstreamPool, private readonly request: FastifyRequest) {
    this.named = pool.name
  }

  /**
   * The next replica's URL for `target` (built for the pool's name), counted in flight, with
   * its name as the Host header unless `rewriteRequestHeaders` chose another; null when the
   * pool has no replica.
   */
  aim (target: URL, headers: UpstreamRequestHeaders): URL | null {
    const replica = this.pool.choose(this.request, this.tried)
    if (replica === null) return null
    if (headers.host === this.named) headers.host = replica.host
    this.named = replica.host
    this.replica = replica
    this.pool.acquire(replica)
    // The target's path passed the proxy's checks; only the origin changes.
    return new URL(replica.origin + target.pathname + target.search)
  }

  /**
   * After a handshake error: true when another replica is to take the handshake (this one
   * never got it, retries and untried replicas are left); this one is then counted failed
   * and released. False: the error is the handshake's answer (`failed` reports it).
   */
  failover (err: Error): boolean {
    const replica = this.replica
    if (replica === null || !neverReachedUpstream(err)) return false
    const tried = this.tried ?? []
    if (tried.length >= this.pool.failover.retries || !this.pool.hasUntried([...tried, replica])) return false
    tried.push(replica)
    this.tried = tried
    this.failed()
    this.release()
    return true
  }

  /** The replica failed the handshake: no connection, a reset or timeout, a bad 101 (passive health). */
  failed (): void {
    if (this.replica !== null) this.pool.failed(this.replica)
  }

  /** The replica answered: a 502, 503 or 504 counts as its failure, anything else as its success. */
  answered (statusCode: number): void {
    if (this.replica === null) return
    if (FAILOVER_STATUS.has(statusCode)) this.pool.failed(this.replica)
    else this.pool.succeeded(this.replica)
  }

  /** The handshake is over without a tunnel, or its tunnel ended: no longer in flight (once). */
  release (): void {
    if (this.replica === null) return
    this.pool.release(this.replica)
    this.replica = null
  }
}
