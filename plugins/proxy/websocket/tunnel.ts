import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { abortSide } from '../../../lib/abrupt-end.js'
import { closeGracefully } from './graceful-close.js'
import { ClosingDirection } from './closing-direction.js'
import { Relay, type RelayOwner } from './relay.js'

/** Why a tunnel ended, for its log line. */
export type TunnelEnd = 'client' | 'upstream' | 'idle' | 'lifetime' | 'shutdown'

export interface TunnelStats {
  /**
   * Bytes written to the upstream and to the client over their connections, handshakes
   * included; to an HTTP/2 client, the tunnel's bytes only (its 200 is a HEADERS frame).
   */
  bytesIn: number
  bytesOut: number
  durationMs: number
  closedBy: TunnelEnd
}

export interface TunnelLimits {
  idleTimeout: number
  maxStreamDuration: number
  /** How long a side that the timeouts asked to close may take to answer before it is cut. */
  closeGrace: number
}

/**
 * The client's end of a tunnel: its upgraded socket, or the HTTP/2 stream of an extended
 * CONNECT, which has neither Nagle's algorithm to turn off nor a byte count of its own.
 */
export type TunnelSocket = Duplex & {
  setTimeout: (ms: number) => unknown
  setNoDelay?: (noDelay?: boolean) => unknown
  bytesWritten?: number
}

/** What each side sent before the tunnel opened, still to be delivered to the other. */
export interface EarlyBytes {
  toClient: readonly Buffer[]
  toUpstream: readonly Buffer[]
}

/**
 * Relays two sockets both ways until both are done (relay.ts: backpressure in both directions,
 * a half-close (FIN) passed on); a side that closes abruptly (reset, error, or closed before it
 * finished reading) takes the other down at once. Frame boundaries are followed (frame headers
 * only) so that `goAway` can close both sides cleanly on shutdown. One timer at most enforces
 * `idleTimeout` and `maxStreamDuration`.
 */
export function openTunnel (client: TunnelSocket, upstream: Socket, limits: TunnelLimits, early: EarlyBytes, onEnd: (stats: TunnelStats) => void): Tunnel {
  const tunnel = new Tunnel(client, upstream, limits, onEnd)
  tunnel.start(early)
  return tunnel
}

interface Closing {
  toClient: ClosingDirection
  toUpstream: ClosingDirection
  clientEnded: boolean
  upstreamEnded: boolean
}

export class Tunnel implements RelayOwner {
  private readonly startedAt = Date.now()
  private timer: NodeJS.Timeout | null = null
  private closedBy: TunnelEnd | null = null
  private closedSides = 0
  private readonly toUpstream: Relay
  private readonly toClient: Relay
  // The shutdown state exists only once it starts.
  private closing: Closing | null = null
  // What `upstream.bytesRead` stood at before the tunnel's first byte from the upstream: a
  // client without a byte count (an HTTP/2 stream) is counted from it, with no listener per chunk.
  private upstreamReadBase = 0

  constructor (
    private readonly client: TunnelSocket,
    private readonly upstream: Socket,
    private readonly limits: TunnelLimits,
    private readonly onEnd: (stats: TunnelStats) => void
  ) {
    client.setTimeout(0)
    client.setNoDelay?.(true)
    upstream.setNoDelay(true)
    const stamp = limits.idleTimeout > 0
    this.toUpstream = new Relay(client, upstream, this, stamp, this.startedAt)
    this.toClient = new Relay(upstream, client, this, stamp, this.startedAt)
    this.schedule(this.startedAt)
  }

  start (early: EarlyBytes): void {
    // The bytes that came with the upstream's 101 were read already; they count as sent to the client.
    let earlyToClient = 0
    for (const chunk of early.toClient) earlyToClient += chunk.length
    this.upstreamReadBase = this.upstream.bytesRead - earlyToClient
    this.toClient.start(early.toClient)
    this.toUpstream.start(early.toUpstream)
  }

  /**
   * Shutdown: a `1001 Going Away` close frame to each side at the next frame boundary in its
   * direction, then each connection ends once its side answered with its own close frame
   * (or hung up). A side that never gets there is left to the registry's grace and `cut`.
   */
  goAway (): void {
    if (this.closing !== null) return
    this.closedBy ??= 'shutdown'
    const progress = (): void => this.closeProgress()
    const closing: Closing = {
      toClient: new ClosingDirection(this.toClient, false, progress),
      toUpstream: new ClosingDirection(this.toUpstream, true, progress),
      clientEnded: false,
      upstreamEnded: false
    }
    this.closing = closing
    closing.toClient.start()
    closing.toUpstream.start()
  }

  /** A connection ends once its side got our close frame and sent its own (or hung up). */
  private closeProgress (): void {
    const closing = this.closing as Closing
    const { toClient, toUpstream } = closing
    if (!closing.clientEnded && toClient.closeSent && toUpstream.peerDone) {
      closing.clientEnded = true
      closeGracefully(this.client)
    }
    if (!closing.upstreamEnded && toUpstream.closeSent && toClient.peerDone) {
      closing.upstreamEnded = true
      closeGracefully(this.upstream)
    }
  }

  /** Ends the tunnel now, e.g. on shutdown. */
  cut (reason: TunnelEnd): void {
    this.closedBy ??= reason
    abortSide(this.client)
    this.upstream.destroy()
  }

  /**
   * The side whose close frame came first ended the tunnel (RFC 6455 7.1.2: the server, often
   * the upstream, closes the TCP connection first, whoever began the close handshake).
   */
  sideSentClose (relay: Relay): void {
    this.closedBy ??= this.sideName(relay)
  }

  /**
   * A FIN without a close frame before it counts as itself: that side ended the tunnel. Which
   * socket's 'close' comes first depends only on how fast each peer answers the FIN passed on.
   */
  sideEnded (relay: Relay): void {
    this.closedBy ??= this.sideName(relay)
    // An HTTP/2 stream that closed (NO_ERROR) before its end was read, with bytes of ours still
    // queued for it: Node destroys it only once those writes finish, which they never do on a
    // closed stream, so it would never emit 'close' and the tunnel never end.
    const { from } = relay
    if ((from as Duplex & { closed?: boolean }).closed === true && !from.destroyed && !from.writableFinished) from.destroy()
  }

  sideClosed (relay: Relay, hadError: boolean): void {
    // A side that read its peer's FIN and finished writing closed cleanly: its relay has ended
    // the other side, which may still be flushing to a slow reader. Anything else is abrupt.
    // During a shutdown each side closes on its own once its close handshake is done.
    const name = this.sideName(relay)
    if (this.closing === null && (hadError || !relay.from.readableEnded)) {
      this.closedBy ??= name
      abortSide(relay.to)
    }
    if (++this.closedSides < 2) return
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.onEnd({
      bytesIn: this.upstream.bytesWritten,
      bytesOut: this.client.bytesWritten ?? this.upstream.bytesRead - this.upstreamReadBase,
      durationMs: Date.now() - this.startedAt,
      closedBy: this.closedBy ?? name
    })
  }

  private sideName (relay: Relay): TunnelEnd {
    return relay === this.toUpstream ? 'client' : 'upstream'
  }

  private schedule (now: number): void {
    const at = this.nextDue()
    if (at !== Infinity) this.timer = setTimeout(() => this.check(), Math.max(0, at - now))
  }

  private nextDue (): number {
    const { idleTimeout, maxStreamDuration } = this.limits
    const idleAt = idleTimeout > 0 ? this.lastActivityAt() + idleTimeout : Infinity
    const lifetimeAt = maxStreamDuration > 0 ? this.startedAt + maxStreamDuration : Infinity
    return Math.min(idleAt, lifetimeAt)
  }

  private lastActivityAt (): number {
    return Math.max(this.toUpstream.lastDataAt, this.toClient.lastDataAt)
  }

  /** Activity only moves a timestamp; the single timer re-arms itself from it when it fires. */
  private check (): void {
    this.timer = null
    const now = Date.now()
    const { maxStreamDuration, idleTimeout } = this.limits
    if (maxStreamDuration > 0 && now >= this.startedAt + maxStreamDuration) return this.expire('lifetime')
    if (idleTimeout > 0 && now >= this.lastActivityAt() + idleTimeout) return this.expire('idle')
    this.schedule(now)
  }

  /**
   * A timeout closes the tunnel as a shutdown does: `1001 Going Away` to each side at a frame
   * boundary, so that both see a clean close rather than a dropped connection (1006); the same
   * timer then cuts whatever has not closed within `closeGrace`.
   */
  private expire (reason: TunnelEnd): void {
    this.closedBy ??= reason
    if (this.closing !== null) return
    this.goAway()
    this.timer = setTimeout(() => this.cut(reason), this.limits.closeGrace)
  }
}
