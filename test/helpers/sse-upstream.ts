import type net from 'node:net'
import type { Test } from 'tap'
import { rawUpstream } from './proxy-servers.js'
import { PROMPTLY, within } from './bounded.js'

// A raw event-stream upstream for the resume tests: each request's socket goes to the test, which
// writes the head and each chunk itself, and cuts the response the way it wants (a reset, a FIN
// without the chunked terminator, a clean end).

export const SSE_HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n'
export const LAST_CHUNK = '0\r\n\r\n'

export interface Exchange {
  socket: net.Socket
  /** The request's head, as received. */
  head: string
}

export interface SseUpstream {
  url: string
  /** Every request head, in order. */
  seen: string[]
  /** The next request; bounded by PROMPTLY, the failure naming `what`. */
  next: (what: string) => Promise<Exchange>
}

export async function sseUpstream (t: Test): Promise<SseUpstream> {
  const seen: string[] = []
  const queue: Exchange[] = []
  let wake = (): void => {}
  const url = await rawUpstream(t, (socket, head) => {
    seen.push(head)
    queue.push({ socket, head })
    wake()
  })
  const take = async (): Promise<Exchange> => {
    while (queue.length === 0) await new Promise<void>(resolve => { wake = resolve })
    return queue.shift() as Exchange
  }
  return { url, seen, next: async (what) => await within(PROMPTLY, take(), what) }
}

/** One chunk of a chunked body, written alone (latin1). */
export function chunk (socket: net.Socket, bytes: string): void {
  socket.write(`${bytes.length.toString(16)}\r\n${bytes}\r\n`, 'latin1')
}

/** The head's `last-event-id` value(s), lower-cased name; [] when none. */
export function lastEventIds (head: string): string[] {
  return head.split('\r\n').filter(line => /^last-event-id:/i.test(line)).map(line => line.slice(line.indexOf(':') + 1).trim())
}
