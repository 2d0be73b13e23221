import type { Socket } from 'node:net'
import { closeGracefully } from './dispatch.js'
import { Direction } from './direction.js'

/** Why a tunnel ended, for its log line. */
export type TunnelEnd = 'client' | 'upstream' | 'idle' | 'lifetime' | 'shutdown'

export interface TunnelStats {
  /** Bytes written to the upstream and to the client over their connections, handshakes included. */
  bytesIn: number
  bytesOut: number
  durationMs: number
  closedBy: TunnelEnd
}

export interface TunnelLimits {
  idleTimeout: number
  maxStreamDuration: number
}

/** What each side sent before the tunnel opened, still to be delivered to the other. */
export interface EarlyBytes {
  toClient: readonly Buffer[]
  toUpstream: readonly Buffer[]
}

/**
 * Pipes two sockets both ways until both are done. `pipe` gives backpressure in both
 * directions and passes a half-close (FIN) on; a side that closes abruptly (reset, error, or
 * closed before it finished reading) takes the other down at once. Frame boundaries are
 * followed (frame headers only) so that `goAway` can close both sides cleanly on shutdown.
 * One timer at most enforces `idleTimeout` and `maxStreamDuration`.
 */
export function openTunnel (client: Socket, upstream: Socket, limits: TunnelLimits, early: EarlyBytes, onEnd: (stats: TunnelStats) => void): Tunnel {
  const tunnel = new Tunnel(client, upstream, limits, onEnd)
  tunnel.start(early)
  return tunnel
}

export class Tunnel {
  private readonly startedAt = Date.now()
  private lastActivityAt = this.startedAt
  private timer: NodeJS.Timeout | null = null
  private closedBy: TunnelEnd | null = null
  private closedSides = 0
  private readonly toUpstream: Direction
  private readonly toClient: Direction
  private draining = false
  private clientEnded = false
  private upstreamEnded = false

  constructor (
    private readonly client: Socket,
    private readonly upstream: Socket,
    private readonly limits: TunnelLimits,
    private readonly onEnd: (stats: TunnelStats) => void
  ) {
    client.setTimeout(0)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    this.toUpstream = new Direction(client, upstream, true, this.onDrainProgress)
    this.toClient = new Direction(upstream, client, false, this.onDrainProgress)
    client.on('close', (hadError: boolean) => this.sideClosed(client, upstream, 'client', hadError))
    upstream.on('close', (hadError: boolean) => this.sideClosed(upstream, client, 'upstream', hadError))
    if (limits.idleTimeout > 0) {
      const touch = (): void => { this.lastActivityAt = Date.now() }
      client.on('data', touch)
      upstream.on('data', touch)
    }
    this.schedule(this.startedAt)
  }

  start (early: EarlyBytes): void {
    this.toClient.start(early.toClient)
    this.toUpstream.start(early.toUpstream)
  }

  /**
   * Shutdown: a `1001 Going Away` close frame to each side at the next frame boundary in its
   * direction, then each connection ends once its side answered with its own close frame
   * (or hung up). A side that never gets there is left to the registry's grace and `cut`.
   */
  goAway (): void {
    if (this.draining) return
    this.draining = true
    this.closedBy ??= 'shutdown'
    this.toClient.goAway()
    this.toUpstream.goAway()
  }

  private readonly onDrainProgress = (): void => {
    if (!this.draining) return
    if (!this.clientEnded && this.toClient.closeSent && this.toUpstream.peerDone) {
      this.clientEnded = true
      closeGracefully(this.client)
    }
    if (!this.upstreamEnded && this.toUpstream.closeSent && this.toClient.peerDone) {
      this.upstreamEnded = true
      closeGracefully(this.upstream)
    }
  }

  /** Ends the tunnel now, e.g. on shutdown. */
  cut (reason: TunnelEnd): void {
    this.closedBy ??= reason
    this.client.destroy()
    this.upstream.destroy()
  }

  private sideClosed (side: Socket, other: Socket, name: TunnelEnd, hadError: boolean): void {
    // A side that read its peer's FIN and finished writing closed cleanly: `pipe` has ended
    // the other side, which may still be flushing to a slow reader. Anything else is abrupt.
    // During a shutdown each side closes on its own once its close handshake is done.
    if (!this.draining && (hadError || !side.readableEnded)) {
      this.closedBy ??= name
      other.destroy()
    }
    if (++this.closedSides < 2) return
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.onEnd({
      bytesIn: this.upstream.bytesWritten,
      bytesOut: this.client.bytesWritten,
      durationMs: Date.now() - this.startedAt,
      closedBy: this.closedBy ?? name
    })
  }

  private schedule (now: number): void {
    const at = this.nextDue()
    if (at !== Infinity) this.timer = setTimeout(() => this.check(), Math.max(0, at - now))
  }

  private nextDue (): number {
    const { idleTimeout, maxStreamDuration } = this.limits
    const idleAt = idleTimeout > 0 ? this.lastActivityAt + idleTimeout : Infinity
    const lifetimeAt = maxStreamDuration > 0 ? this.startedAt + maxStreamDuration : Infinity
    return Math.min(idleAt, lifetimeAt)
  }

  /** Activity only moves a timestamp; the single timer re-arms itself from it when it fires. */
  private check (): void {
    this.timer = null
    const now = Date.now()
    const { maxStreamDuration, idleTimeout } = this.limits
    if (maxStreamDuration > 0 && now >= this.startedAt + maxStreamDuration) return this.cut('lifetime')
    if (idleTimeout > 0 && now >= this.lastActivityAt + idleTimeout) return this.cut('idle')
    this.schedule(now)
  }
}
