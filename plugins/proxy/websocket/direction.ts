import type { Socket } from 'node:net'
import { FrameCursor, goingAwayFrame, OPCODE_CLOSE } from './frames.js'

/**
 * One direction of a tunnel: `from`'s bytes piped to `to` while a FrameCursor follows where
 * frames end. On shutdown (`goAway`) the pipe stops at the next frame boundary, a close frame
 * goes to `to`, and `from` is then read only to see its own close frame, which is not passed
 * on: after sending a close frame an endpoint sends nothing more (RFC 6455 5.5.1), and the
 * proxy has sent one for `from` already.
 */
export class Direction {
  /** The close frame went to `to`, or none can: `to` is ended or gone. */
  closeSent = false
  /** `from` sent its close frame, ended or closed: it will send nothing more. */
  peerDone = false
  private readonly cursor = new FrameCursor()
  private draining = false

  constructor (
    private readonly from: Socket,
    private readonly to: Socket,
    /** Towards the upstream the proxy is a WebSocket client: its frames are masked. */
    private readonly masked: boolean,
    /** Called when `closeSent` or `peerDone` may have changed during a shutdown. */
    private readonly onProgress: () => void
  ) {}

  /** Writes what `from` sent before the tunnel opened, then pipes the rest. */
  start (early: readonly Buffer[]): void {
    for (const chunk of early) {
      this.cursor.advance(chunk, 0, false)
      this.to.write(chunk)
    }
    this.from.on('data', this.onData)
    this.from.pipe(this.to)
  }

  goAway (): void {
    if (this.draining) return
    this.draining = true
    // From here this class forwards what is left of the current frame itself, so it can stop
    // at its end: pipe would write a whole chunk, which may hold the next frame's start.
    this.from.unpipe(this.to)
    this.from.once('end', this.onFromGone)
    this.from.once('close', this.onFromGone)
    this.to.once('close', this.onToGone)
    if (this.to.writableEnded || this.to.destroyed) this.closeSent = true
    else if (this.cursor.atBoundary) this.sendClose()
    if (this.from.readableEnded || this.from.destroyed) this.onFromGone()
    else this.from.resume()
    this.onProgress()
  }

  private readonly onData = (chunk: Buffer): void => {
    // The hot path: pipe forwards the chunk; this only moves the cursor over it.
    if (!this.draining) this.cursor.advance(chunk, 0, false)
    else this.onDrainingData(chunk)
  }

  private onDrainingData (chunk: Buffer): void {
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
  private readonly onToGone = (): void => {
    this.closeSent = true
    this.from.resume()
    this.onProgress()
  }

  /** `from` ended or closed. Mid-frame, `to` would wait forever for the rest: it is cut. */
  private readonly onFromGone = (): void => {
    if (this.peerDone) return
    this.peerDone = true
    if (!this.closeSent) {
      this.closeSent = true
      this.to.destroy()
    }
    this.onProgress()
  }
}
