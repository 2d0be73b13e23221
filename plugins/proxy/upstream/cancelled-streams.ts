import type { FastifyRequest } from 'fastify'

// HTTP/2 rapid reset: a client opens streams and resets them in the same write. The proxy starts
// each stream's upstream request as the stream is parsed, before the reset further on in the same
// read is: a stream that finds an idle upstream connection has its request written at once, and
// its reset then costs that connection (a request cancelled after its write is cancelled by
// closing its connection). So an HTTP/2 session whose client has cancelled many calls before their
// answer has its next requests sent one turn of the event loop later, after the rest of the read
// it came in: a stream reset in that read is then seen cancelled, and costs the upstream nothing.
// Other sessions, and HTTP/1.1, are not delayed. (How many connects the requests that do go out
// can start at once is bounded per origin by connect-gate.ts.)

/** Calls a session's client may cancel before their upstream answer until its requests wait a turn. */
export const CANCELLED_BEFORE_DELAY = 16

const kCancelled = Symbol('fastify-streamline.cancelled-calls')

export interface CountedSession {
  [kCancelled]?: number
}

/**
 * `request`'s HTTP/2 session (undefined over HTTP/1.1), taken while its stream is open: a
 * stream no longer knows its session once it is closed, which is when a cancel is counted.
 */
export function sessionOf (request: FastifyRequest): CountedSession | undefined {
  return (request.raw as { stream?: { session?: CountedSession } }).stream?.session
}

/** The client cancelled a call of `session` before its upstream answer. */
export function noteCancelled (session: CountedSession | undefined): void {
  if (session !== undefined) session[kCancelled] = (session[kCancelled] ?? 0) + 1
}

/** Whether the client of `session` (sessionOf) has cancelled many calls. */
export function cancelsOften (session: CountedSession | undefined): boolean {
  return session !== undefined && (session[kCancelled] ?? 0) >= CANCELLED_BEFORE_DELAY
}
