import { randomFillSync } from 'node:crypto'

// RFC 6455 5.2: 2 bytes, then a 16- or 64-bit extended length, then a 4-byte masking key.
const MAX_HEADER = 14
export const OPCODE_CLOSE = 0x8

/**
 * Where the WebSocket frames in one direction of a tunnel begin and end, so that a shutdown
 * can put its close frame between two of them. Hand-written rather than taken from `ws`,
 * whose Receiver decodes (unmasks, inflates, buffers) every payload: this reads frame
 * headers only and skips payloads as a byte count, never copying or touching them, which
 * keeps the byte pipe's hot path to a subtraction per chunk. Extensions (RSV bits,
 * permessage-deflate) do not change framing, so they need nothing here.
 */
export class FrameCursor {
  /** Opcode of the last frame whose header was read (-1 before the first). */
  opcode = -1
  /** A close frame's header has been read: this side has begun the close handshake. */
  closeSeen = false
  /** Payload bytes of the current frame still to come. */
  private remaining = 0
  /** A header split across chunks: its first bytes, kept until it is whole. Allocated only then. */
  private partial: Buffer | null = null
  private partialLength = 0

  /** Between two frames: a close frame written now would not cut one. */
  get atBoundary (): boolean {
    return this.remaining === 0 && this.partialLength === 0
  }

  /**
   * Follows `chunk` from `at` and returns the offset reached: the chunk's end, or with
   * `stopAtBoundary` the end of the first frame that ends inside it (at least one byte on).
   * On the relay's hot path a chunk inside a payload costs one subtraction, a header a few byte reads.
   */
  advance (chunk: Buffer, at: number, stopAtBoundary: boolean): number {
    const end = chunk.length
    while (at < end) {
      if (this.remaining > 0) {
        if (end - at <= this.remaining) {
          this.remaining -= end - at
          return end
        }
        at += this.remaining
        this.remaining = 0
      } else {
        at = this.readHeader(chunk, at)
      }
      if (stopAtBoundary && this.atBoundary) return at
    }
    return at
  }

  private readHeader (chunk: Buffer, at: number): number {
    const end = chunk.length
    if (this.partialLength === 0 && end - at >= 2) {
      const size = headerSize(chunk[at + 1])
      if (end - at >= size) {
        this.startFrame(chunk, at)
        return at + size
      }
    }
    // The header is split: gather its bytes (at most 14) until it is whole.
    const partial = this.partial ??= Buffer.allocUnsafe(MAX_HEADER)
    while (at < end) {
      partial[this.partialLength++] = chunk[at++]
      if (this.partialLength >= 2 && this.partialLength === headerSize(partial[1])) {
        this.startFrame(partial, 0)
        this.partialLength = 0
        break
      }
    }
    return at
  }

  private startFrame (header: Buffer, at: number): void {
    this.opcode = header[at] & 0x0f
    if (this.opcode === OPCODE_CLOSE) this.closeSeen = true
    const length7 = header[at + 1] & 0x7f
    if (length7 < 126) this.remaining = length7
    else if (length7 === 126) this.remaining = header.readUInt16BE(at + 2)
    // Past 2^53 the count loses precision; such a frame never ends within a grace period anyway.
    else this.remaining = header.readUInt32BE(at + 2) * 0x1_0000_0000 + header.readUInt32BE(at + 6)
  }
}

/** Header size from its second byte: the mask bit and the 7-bit length say what follows. */
function headerSize (second: number): number {
  const length7 = second & 0x7f
  const extended = length7 === 126 ? 2 : length7 === 127 ? 8 : 0
  return 2 + extended + ((second & 0x80) !== 0 ? 4 : 0)
}

/**
 * A close frame `1001 Going Away`. Towards the upstream the proxy is the client, and a
 * client's frames are masked with a fresh unpredictable key (RFC 6455 5.3); towards the
 * client it is the server, whose frames are not masked.
 */
export function goingAwayFrame (masked: boolean): Buffer {
  if (!masked) return Buffer.from([0x80 | OPCODE_CLOSE, 2, 0x03, 0xe9])
  const frame = Buffer.alloc(8)
  frame[0] = 0x80 | OPCODE_CLOSE
  frame[1] = 0x80 | 2
  randomFillSync(frame, 2, 4)
  frame[6] = 0x03 ^ frame[2]
  frame[7] = 0xe9 ^ frame[3]
  return frame
}
