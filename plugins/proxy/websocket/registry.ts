/** An upgrade from hijack until everything it opened is closed. */
export interface Drainable {
  /** Shutdown: end cleanly (refuse a pending handshake, close a tunnel's WebSocket sessions). */
  goAway: () => void
  /** Grace is over: destroy everything now. */
  cut: () => void
}

/**
 * The hijacked connections of one proxy registration, so `app.close()` can end them: Node's
 * server keeps counting an upgraded socket until it closes, and Fastify no longer knows about
 * it. Each entry removes itself (`delete`) once all it opened has closed.
 */
export class TunnelRegistry {
  private readonly open = new Set<Drainable>()
  private onEmpty: (() => void) | null = null
  private closing = false

  add (entry: Drainable): void {
    this.open.add(entry)
  }

  delete (entry: Drainable): void {
    if (this.open.delete(entry) && this.open.size === 0) this.onEmpty?.()
  }

  /** `drain` has begun: no new upgrade should be started. */
  get draining (): boolean {
    return this.closing
  }

  /**
   * Asks every open upgrade to go away, resolves as soon as all have closed, and cuts
   * whatever is still open after `grace` ms (a tunnel mid-frame, a side that does not answer).
   */
  async drain (grace: number): Promise<void> {
    this.closing = true
    if (this.open.size === 0) return
    await new Promise<void>(resolve => {
      const timer = setTimeout(() => {
        this.onEmpty = null
        for (const entry of [...this.open]) entry.cut()
        resolve()
      }, grace)
      this.onEmpty = () => {
        this.onEmpty = null
        clearTimeout(timer)
        resolve()
      }
      for (const entry of [...this.open]) entry.goAway()
    })
  }
}
