import type { Duplex } from 'node:stream'
import { FrameCursor } from './frames.js'

/** What a relay reports to the tunnel it belongs to. */
export interface RelayOwner {
  /** `relay.from` sent a close frame (the first one it sent). */
  sideSentClose: (relay: Relay) => void
  /** `relay.from` sent its FIN (passed on to `relay.to` unless a shutdown took the direction over). */
  sideEnded: (relay: Relay) => void
  /** `relay.from` closed, cleanly or not. */
  sideClosed: (relay: Relay, hadError: boolean) => void
}

/**
 * One direction of an open tunnel: writes what `from` sends to `to`, with backpressure (`from`
 * pauses while `to` is full) and its FIN passed on, and follows the frame headers in it so that
 * a shutdown can stop at a frame boundary. Hand-written rather than `from.pipe(to)` plus
 * listeners beside it: with several 'data' listeners every chunk's emit copies the listener
 * array, and a pipe keeps about ten closures and once-wrappers per direction for an idle
 * tunnel. Here each event has one listener, made once; a chunk costs a frame-header read or a
 * subtraction, a `write`, and a clock read only when an idle timeout needs it.
 */
export class Relay {
  readonly frames = new FrameCursor()
  /** When `from` last sent a byte: read by the idle timeout, stamped only when there is one. */
  lastDataAt: number
  private relaying = false
  private closeReported = false

  constructor (
    readonly from: Duplex,
    readonly to: Duplex,
    private readonly owner: RelayOwner,
    private readonly stampData: boolean,
    openedAt: number
  ) {
    this.lastDataAt = openedAt
    from.on('end', this.onEnd)
    from.on('close', this.onClose)
  }

  /** Writes what `from` sent before the tunnel opened, then relays the rest. */
  start (early: readonly Buffer[]): void {
    const { from, to } = this
    for (const chunk of early) {
      this.frames.advance(chunk, 0, false)
      to.write(chunk)
    }
    this.reportClose()
    this.relaying = true
    from.on('data', this.onData)
    to.on('drain', this.onDrain)
    // `from` may have been paused while the handshake held its bytes; it stays paused while
    // the early bytes fill `to`.
    if (to.writableNeedDrain) from.pause()
    else from.resume()
  }

  /** The shutdown's ClosingDirection takes this direction over: it forwards and ends on its own. */
  stop (): void {
    this.relaying = false
    this.from.removeListener('data', this.onData)
    this.to.removeListener('drain', this.onDrain)
  }

  /** Activity the shutdown's ClosingDirection saw on `from`, for the idle timeout. */
  touch (): void {
    if (this.stampData) this.lastDataAt = Date.now()
  }

  private readonly onData = (chunk: Buffer): void => {
    this.frames.advance(chunk, 0, false)
    if (this.frames.closeSeen && !this.closeReported) this.reportClose()
    if (this.stampData) this.lastDataAt = Date.now()
    if (!this.to.write(chunk)) this.from.pause()
  }

  private reportClose (): void {
    if (!this.frames.closeSeen || this.closeReported) return
    this.closeReported = true
    this.owner.sideSentClose(this)
  }

  private readonly onDrain = (): void => {
    this.from.resume()
  }

  private readonly onEnd = (): void => {
    if (this.relaying) this.to.end()
    this.owner.sideEnded(this)
  }

  private readonly onClose = (hadError: boolean): void => {
    this.owner.sideClosed(this, hadError)
  }
}
