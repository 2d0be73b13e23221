import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'

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

/**
 * The hijacked connections of one proxy registration, from hijack to close, so `app.close()`
 * can end them: Node's server keeps counting an upgraded socket until it closes, and
 * Fastify no longer knows about it.
 */
export class TunnelRegistry {
  private readonly open = new Map<Duplex, () => void>()

  /** Tracks a connection until `client` closes; `cut` destroys it and everything tied to it. */
  add (client: Duplex, cut: () => void): void {
    this.open.set(client, cut)
    client.once('close', () => this.open.delete(client))
  }

  get size (): number {
    return this.open.size
  }

  /** Lets open connections finish for up to `grace` ms, then cuts the rest. */
  async drain (grace: number): Promise<void> {
    if (this.open.size === 0) return
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => {
        for (const cut of this.open.values()) cut()
        resolve()
      }, grace)
      let waiting = this.open.size
      for (const client of this.open.keys()) {
        client.once('close', () => {
          if (--waiting === 0) {
            clearTimeout(timer)
            resolve()
          }
        })
      }
    })
  }
}

/**
 * Pipes two sockets both ways until both are done, without parsing a byte. `pipe` gives
 * backpressure in both directions and passes a half-close (FIN) on; a side that closes
 * abruptly (reset, error, or closed before it finished reading) takes the other down at
 * once. One timer at most enforces `idleTimeout` and `maxStreamDuration`.
 */
export function openTunnel (client: Socket, upstream: Socket, limits: TunnelLimits, onEnd: (stats: TunnelStats) => void): Tunnel {
  const tunnel = new Tunnel(client, upstream, limits, onEnd)
  client.pipe(upstream)
  upstream.pipe(client)
  return tunnel
}

export class Tunnel {
  private readonly startedAt = Date.now()
  private lastActivityAt = this.startedAt
  private timer: NodeJS.Timeout | null = null
  private closedBy: TunnelEnd | null = null
  private closedSides = 0

  constructor (
    private readonly client: Socket,
    private readonly upstream: Socket,
    private readonly limits: TunnelLimits,
    private readonly onEnd: (stats: TunnelStats) => void
  ) {
    client.setTimeout(0)
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    client.on('close', (hadError: boolean) => this.sideClosed(client, upstream, 'client', hadError))
    upstream.on('close', (hadError: boolean) => this.sideClosed(upstream, client, 'upstream', hadError))
    if (limits.idleTimeout > 0) {
      const touch = (): void => { this.lastActivityAt = Date.now() }
      client.on('data', touch)
      upstream.on('data', touch)
    }
    this.schedule(this.startedAt)
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
    if (hadError || !side.readableEnded) {
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
