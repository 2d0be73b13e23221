/**
 * Where a relayed gRPC body stands: at a message boundary or inside a message. Every message
 * (gRPC and gRPC-Web's binary forms alike) is a 5-byte prefix, a flag and a 4-byte big-endian
 * length, then that many bytes; the upstream's bytes arrive in arbitrary pieces, so a prefix may
 * straddle two chunks. Only prefixes are read: a message's own bytes are skipped over.
 */
export class GrpcFrames {
  /** Prefix bytes read of the current message, 0 to 5; 0: at a boundary. */
  private prefix = 0
  /** The current message's length, as its prefix is read. */
  private length = 0
  /** Bytes of the current message still to come, once its prefix is whole. */
  private left = 0

  get atBoundary (): boolean {
    return this.prefix === 0
  }

  /**
   * Follows `chunk`; with `stop`, only up to the first boundary reached in it. Returns how many
   * of its bytes were followed: `chunk.length`, or less when it stopped at a boundary.
   */
  advance (chunk: Buffer, stop: boolean): number {
    let i = 0
    while (i < chunk.length) {
      if (this.prefix < 5) {
        const byte = chunk[i++]
        // Byte 0 is the flag; bytes 1 to 4 the length.
        if (this.prefix > 0) this.length = this.length * 256 + byte
        if (++this.prefix < 5) continue
        this.left = this.length
      } else {
        const take = Math.min(this.left, chunk.length - i)
        i += take
        this.left -= take
      }
      if (this.left === 0) {
        this.prefix = 0
        this.length = 0
        if (stop) return i
      }
    }
    return i
  }
}
