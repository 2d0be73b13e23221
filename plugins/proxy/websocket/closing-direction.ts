import type { Duplex } from 'node:stream'
import { abortSide } from '../../../lib/abrupt-end.js'
import { goingAwayFrame, OPCODE_CLOSE, type FrameCursor } from './frames.js'
import type { Relay } from './relay.js'

/**
 * One direction of a tunnel during shutdown, made by `Tunnel.goAway` from the direction's
 * relay: forwarding stops at the next frame boundary (the relay's cursor has followed every
 * byte `from` sent), a close frame goes to `to`, and `from` is then read only to see its own
 * close frame, which is not passed on: after sending a close frame an endpoint sends nothing
 * more (RFC 6455 5.5.1), and the proxy has sent one for `from` already.
 */
export class ClosingDirection {
  /** The close frame went to `to`, or none can: `to` is ended or gone. */
  closeSent = false
  /** `from` sent its close frame, ended or closed: it will send nothing more. */
  peerDone = false

  private readonly from: Duplex
  private readonly to: Duplex
  private readonly cursor: FrameCursor

  constructor (
    private readonly relay: Relay,
    /** Towards the upstream the proxy is a WebSocket client: its frames are masked. */
    private readonly masked: boolean,
    /** Called when `closeSent` or `peerDone` may have changed. */
    private readonly onProgress: () => void
  ) {
    this.from = relay.from
    this.to = relay.to
    this.cursor = relay.frames
  }

  start (): void {
    const { from, to } = this
    // From here this class forwards what is left of the current frame itself, so it can stop
    // at its end: the relay would write a whole chunk, which may hold the next frame's start.
    this.relay.stop()
    from.on('data', chunk => this.onData(chunk as Buffer))
    const fromGone = (): void => this.fromGone()
    from.once('end', fromGone)
    from.once('close', fromGone)
    to.once('close', () => this.toGone())
    if (to.writableEnded || to.destroyed) this.closeSent = true
    else if (this.cursor.atBoundary) this.sendClose()
    if (from.readableEnded || from.destroyed) this.fromGone()
    else from.resume()
    this.onProgress()
  }

  private onData (chunk: Buffer): void {
    // Still activity for the idle timeout while the close handshake runs.
    this.relay.touch()
    let at = 0
    if (!this.closeSent) {
      at = this.cursor.advance(chunk, 0, true)
      this.forward(at === chunk.length ? chunk : chunk.subarray(0, at))
      if (!this.cursor.atBoundary) return
      this.sendClose()
    }
    while (at < chunk.length && !this.peerDone) {
      at = this.cursor.advance(chunk, at, true)
      if (this.cursor.atBoundary && this.cursor.opcode === OPCODE_CLOSE) this.peerDone = true
    }
    if (this.peerDone) this.onProgress()
  }

  private forward (part: Buffer): void {
    if (part.length > 0 && !this.to.write(part)) {
      this.from.pause()
      this.to.once('drain', () => this.from.resume())
    }
  }

  private sendClose (): void {
    this.closeSent = true
    // The frame that just went through was `from`'s own close: `to` has its close frame, and a
    // second one would break the protocol; `from` is done as well.
    if (this.cursor.opcode === OPCODE_CLOSE) {
      this.peerDone = true
      return
    }
    this.to.write(goingAwayFrame(this.masked))
    // Nothing more is written to `to`, so `from` is read freely whatever `to`'s backpressure.
    this.from.resume()
  }

  /** `to` is gone: nothing more can reach it, but `from` may still owe its close frame. */
  private toGone (): void {
    this.closeSent = true
    this.from.resume()
    this.onProgress()
  }

  /** `from` ended or closed. Mid-frame, `to` would wait forever for the rest: it is cut. */
  private fromGone (): void {
    if (this.peerDone) return
    this.peerDone = true
    if (!this.closeSent) {
      this.closeSent = true
      abortSide(this.to)
    }
    this.onProgress()
  }
}
