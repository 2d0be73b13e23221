const CR = 13
const LF = 10

/**
 * Where a relayed event stream stands: at an event boundary or inside an event. An event ends
 * at a blank line, i.e. two line terminators in a row, each one CRLF, LF or CR (the three the
 * SSE format allows). The upstream's bytes arrive in arbitrary pieces, so a terminator pair may
 * straddle two chunks, and a CRLF too. Hand-written: no library exposes this state without
 * parsing the events (and buffering them), which the relay must not do.
 */
export class EventBoundary {
  /** Line terminators at the end of what was relayed; 2 or more: the last event is complete. */
  private run = 2 // nothing relayed yet: a boundary
  /** The last byte relayed was CR: an LF right after it belongs to the same terminator. */
  private lastCR = false

  get atBoundary (): boolean {
    return this.run >= 2
  }

  /**
   * At a boundary where bytes of our own (a heartbeat comment) may go: not right after a CR,
   * whose LF may still come in the next chunk as the same CRLF terminator.
   */
  get settled (): boolean {
    return this.run >= 2 && !this.lastCR
  }

  /** Follows a chunk relayed whole. Looks only at its trailing terminators, a few bytes. */
  pass (chunk: Buffer): void {
    if (chunk.length === 0) return
    let i = chunk.length - 1
    while (i >= 0 && (chunk[i] === CR || chunk[i] === LF)) i--
    const count = terminators(chunk, i + 1, i < 0 && this.lastCR)
    this.run = i < 0 ? this.run + count : count
    this.lastCR = chunk[chunk.length - 1] === CR
  }

  /** The length of `chunk` up to and including the end of the event in progress, or -1 if it does not end in it. */
  endIn (chunk: Buffer): number {
    let run = this.run
    let lastCR = this.lastCR
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]
      if (byte === LF && lastCR) {
        lastCR = false
        continue
      }
      if (byte !== CR && byte !== LF) {
        run = 0
        lastCR = false
        continue
      }
      lastCR = byte === CR
      // A CRLF that ends the event is kept whole when both bytes are here.
      if (++run >= 2) return lastCR && chunk[i + 1] === LF ? i + 2 : i + 1
    }
    return -1
  }
}

/** Terminators in `chunk` from `from` to its end (all CR or LF); an LF right after a CR is part of it. */
function terminators (chunk: Buffer, from: number, afterCR: boolean): number {
  let count = 0
  for (let i = from; i < chunk.length; i++) {
    const previousCR = i > from ? chunk[i - 1] === CR : afterCR
    if (chunk[i] === CR || !previousCR) count++
  }
  return count
}
