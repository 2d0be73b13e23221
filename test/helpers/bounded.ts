import type { Socket } from 'node:net'
import { receive, type Received } from './receive.js'

// Every wait in a test is bounded: a regression fails within seconds, with a message naming what
// never came, instead of hanging until tap's file timeout. The bounds are far above what a loaded
// 2-core machine needs for these events (typically a few ms), so they never fail a healthy run.

/** The usual bound for an event that should follow at once (a close, an end, an answer). */
export const PROMPTLY = 5000

/**
 * `promise`'s value, or a rejection naming `missing` if it has not settled within `ms`. `missing`
 * may be a function, to describe the state at the time of the timeout.
 */
export async function within<T> (ms: number, promise: Promise<T>, missing: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`not within ${ms} ms: ${typeof missing === 'function' ? missing() : missing}`)) }, ms)
  })
  try {
    return await Promise.race([promise, expired])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `condition` every 5 ms until it holds; rejects naming `missing` after `ms`. */
export async function until (ms: number, condition: () => boolean, missing: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${missing}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

/**
 * How the peer left `socket`: 'end' (its FIN) or 'close' (a reset, or our side destroyed), at
 * most `ms` from now. A half-open socket never emits 'close' on a FIN alone, hence both.
 */
export async function peerLeft (socket: Socket, missing: string, ms = PROMPTLY): Promise<'end' | 'close'> {
  if (socket.readableEnded) return 'end'
  if (socket.destroyed) return 'close'
  // Listeners rather than events.once, which would reject on the 'error' a reset brings.
  const ending = new Promise<'end' | 'close'>(resolve => {
    socket.once('end', () => resolve('end'))
    socket.once('close', () => resolve('close'))
  })
  return await within(ms, ending, missing)
}

/** The bound for a whole HTTP answer: some tests' upstreams stream for a second or two first. */
export const ANSWERED = 15_000

/** `receive` (helpers/receive.ts), bounded: the client's whole answer, or a failure naming the URL. */
export async function receiveWithin (...args: Parameters<typeof receive>): Promise<Received> {
  return await within(ANSWERED, receive(...args), `an answer to ${String(args[0])}`)
}

/** The rest of `stream` as text, once it ended; bounded. */
export async function textOf (stream: AsyncIterable<unknown>, missing: string, ms = ANSWERED): Promise<string> {
  const read = async (): Promise<string> => {
    let text = ''
    for await (const chunk of stream) text += String(chunk)
    return text
  }
  return await within(ms, read(), missing)
}
