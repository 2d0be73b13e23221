const CR = 13
const LF = 10
const COLON = 58
const SPACE = 32
const I = 105
const D = 100

/** How many of the last relayed ids a resumed stream's replay is compared with. */
const WINDOW = 8
/**
 * The most held of one event: past it, the event goes to the client as it comes (as without
 * resume), and the stream is not resumable until that event ends: memory stays bounded whatever
 * the upstream sends.
 */
export const MAX_HELD = 1024 * 1024

/**
 * The events of a resumable event stream (sse-resume.ts), cut into whole events: what may be
 * relayed is only complete events (a partial one is held until its blank line comes), and the
 * last event id the client has seen is tracked by the WHATWG rules: every dispatched block sets
 * it from the id buffer (an event without an `id:` field keeps the previous one), an empty
 * `id:` empties it, a value with NUL is ignored. Only resumable streams pay for this parsing.
 */
export class EventLog {
  /** The client's last event id, as its EventSource sees it; '' = none. */
  lastId = ''
  /** Drop replayed events (an id among the recent ones) until a fresh id passes. */
  deduplicate = false
  /** Part of the event in progress went to the client unheld (MAX_HELD): a cut now cannot be resumed cleanly. */
  torn = false
  private readonly recent: string[] = []
  private held: Buffer | null = null
  /** Where the scan of `held` stopped, with its state there. */
  private scanned = 0
  private run = 2
  private lastCR = false

  /** The complete events `chunk` finishes, as one Buffer to relay (replays dropped), or null. */
  take (chunk: Buffer): Buffer | null {
    const data = this.held === null ? chunk : Buffer.concat([this.held, chunk])
    let start = 0
    let out: Buffer[] | null = null
    for (let i = this.scanned; i < data.length; i++) {
      const byte = data[i]
      if (byte === LF && this.lastCR) {
        this.lastCR = false
        continue
      }
      if (byte !== CR && byte !== LF) {
        this.run = 0
        this.lastCR = false
        continue
      }
      this.lastCR = byte === CR
      if (++this.run < 2) continue
      // A CRLF that ends the event is kept whole when both bytes are here.
      const end = this.lastCR && data[i + 1] === LF ? i + 2 : i + 1
      if (end === i + 2) {
        this.lastCR = false
        i++
      }
      const event = data.subarray(start, end)
      start = end
      if (this.torn) {
        // The rest of an event relayed unheld: its id, if any, was in the part already gone.
        this.torn = false
        this.lastId = ''
        ;(out ??= []).push(event)
      } else if (this.admit(event)) (out ??= []).push(event)
    }
    this.held = start < data.length ? data.subarray(start) : null
    this.scanned = data.length - start
    if (this.held !== null && (this.torn || this.held.length > MAX_HELD)) {
      this.torn = true
      ;(out ??= []).push(this.held)
      this.held = null
      this.scanned = 0
    }
    if (out === null) return null
    return out.length === 1 ? out[0] : Buffer.concat(out)
  }

  /** The stream was cut: a partial event is dropped, and the next response starts afresh. */
  dropPartial (): void {
    this.torn = false
    this.held = null
    this.scanned = 0
    this.run = 2
    this.lastCR = false
  }

  /** Whether `event` goes to the client; if so the last id follows it. */
  private admit (event: Buffer): boolean {
    const id = idOf(event)
    if (this.deduplicate && id !== null) {
      if (this.recent.includes(id)) return false
      this.deduplicate = false
    }
    if (id === null) return true
    this.lastId = id
    if (id === '') return true
    this.recent.push(id)
    if (this.recent.length > WINDOW) this.recent.shift()
    return true
  }
}

/** The value of the event's last valid `id` field; null when it has none. */
export function idOf (event: Buffer): string | null {
  let id: string | null = null
  let line = 0
  while (line < event.length) {
    let end = line
    while (end < event.length && event[end] !== CR && event[end] !== LF) end++
    if (event[line] === I && event[line + 1] === D && (end === line + 2 || event[line + 2] === COLON)) {
      const from = end === line + 2 ? end : event[line + 3] === SPACE ? line + 4 : line + 3
      const value = event.toString('utf8', Math.min(from, end), end)
      if (!value.includes('\0')) id = value
    }
    line = end + (event[end] === CR && event[end + 1] === LF ? 2 : 1)
  }
  return id
}
