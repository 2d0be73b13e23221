import type { Duplex } from 'node:stream'

// Client bytes held while the upstream decides; past this the client socket is paused and
// TCP (or HTTP/2 flow control) pushes back. A client has no reason to send much before it sees the 101.
const MAX_HELD_BYTES = 64 * 1024

/**
 * What the client sends between its handshake and the upstream's answer: held, then handed
 * to the tunnel on a 101, or dropped with this object on a refusal, so the upstream never sees bytes before it
 * has agreed to the upgrade.
 */
export class HeldBytes {
  private chunks: Buffer[] = []
  private size = 0

  /** `head`: the bytes Node read past the handshake in the same packet(s). */
  constructor (private readonly client: Duplex, head: Buffer) {
    if (head.length > 0) this.add(head)
  }

  listen (): void {
    this.client.on('data', this.onData)
  }

  /** Holding ends; what was held stays until `take`. */
  stop (): void {
    this.client.removeListener('data', this.onData)
  }

  take (): Buffer[] {
    this.stop()
    const chunks = this.chunks
    this.chunks = []
    return chunks
  }

  private readonly onData = (chunk: Buffer): void => this.add(chunk)

  private add (chunk: Buffer): void {
    this.chunks.push(chunk)
    this.size += chunk.length
    if (this.size >= MAX_HELD_BYTES) this.client.pause()
  }
}
