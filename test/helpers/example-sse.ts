import type { Readable } from 'node:stream'

export interface SseEvent {
  id?: string
  event?: string
  data: string
}

/** Parses a text/event-stream body as it arrives (enough of the format for the demo's events). */
export class SseReader {
  readonly events: SseEvent[] = []
  readonly ended: Promise<void>
  #buffer = ''
  #waiters: Array<() => void> = []

  constructor (body: Readable) {
    body.setEncoding('utf8')
    body.on('data', (text: string) => this.#parse(text))
    this.ended = new Promise((resolve, reject) => {
      body.once('end', resolve)
      body.once('error', reject)
    })
    // Until a test awaits `ended`, an error (e.g. a cut stream) must not be unhandled.
    this.ended.catch(() => {})
  }

  /** Resolves once `count` events have arrived in total. */
  async waitForEvents (count: number): Promise<SseEvent[]> {
    while (this.events.length < count) {
      await Promise.race([
        new Promise<void>(resolve => this.#waiters.push(resolve)),
        this.ended.then(() => { throw new Error(`stream ended after ${this.events.length} of ${count} events`) })
      ])
    }
    return this.events.slice(0, count)
  }

  #parse (text: string): void {
    this.#buffer += text
    let end: number
    while ((end = this.#buffer.indexOf('\n\n')) !== -1) {
      const block = this.#buffer.slice(0, end)
      this.#buffer = this.#buffer.slice(end + 2)
      const event: SseEvent = { data: '' }
      for (const line of block.split('\n')) {
        const [field, ...rest] = line.split(': ')
        const value = rest.join(': ')
        if (field === 'id') event.id = value
        else if (field === 'event') event.event = value
        else if (field === 'data') event.data = value
      }
      if (event.event !== undefined) this.events.push(event)
    }
    for (const wake of this.#waiters.splice(0)) wake()
  }
}
