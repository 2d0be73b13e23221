import type { ServerResponse } from 'node:http'
import { http2Stream } from '../../lib/abrupt-end.js'
import { isEventStreamType } from '../../lib/event-stream.js'

// What the deadline reads off a response to tell its phase: bytes written, headers sent.

/**
 * A count that moves whenever the response writes: the idle clock's measure, read at each
 * check rather than kept by wrapping every write. Over HTTP/1.1 it is the socket's own byte
 * count (one connection, one response at a time). Over HTTP/2 the socket is the session's,
 * shared by every stream, so a stalled stream would look busy while another one flows; Node's
 * Http2Stream keeps no count of its own, so the response's writes are counted, by a wrapper
 * installed the first time the count is asked for (only streams that reach the idle clock pay).
 */
export function bytesWritten (res: ServerResponse): number {
  if (http2Stream(res) === undefined) return res.socket?.bytesWritten ?? 0
  const counted = res as CountedResponse
  if (counted[kWritten] === undefined) countWrites(counted)
  return counted[kWritten] as number
}

const kWritten = Symbol('fastify-streamline.written')

type CountedResponse = ServerResponse & { [kWritten]?: number }

function countWrites (res: CountedResponse): void {
  res[kWritten] = 0
  const write = res.write
  res.write = function countedWrite (this: CountedResponse, chunk: { length: number }, ...rest: unknown[]): boolean {
    this[kWritten] = (this[kWritten] as number) + chunk.length
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
  } as ServerResponse['write']
}

/** Whether the response's head says it is an event stream. */
export function isEventStream (res: ServerResponse): boolean {
  return isEventStreamType(sentHeader(res, 'content-type'))
}

/**
 * A response header's value as set or sent. `writeHead(status, headers)` on a response with
 * no `setHeader` calls writes the head without keeping the headers, so `getHeader` cannot
 * see them; the serialised head (`_header`, stable since Node 0.x) still can.
 */
export function sentHeader (res: ServerResponse, name: string): string | undefined {
  const value = res.getHeader(name)
  if (value !== undefined) return String(value)
  const head = (res as unknown as { _header?: string | null })._header
  if (typeof head !== 'string') return undefined
  let pattern = headPatterns.get(name)
  if (pattern === undefined) {
    pattern = new RegExp(`\\r\\n${name}:[ \\t]*([^\\r]*)`, 'i')
    headPatterns.set(name, pattern)
  }
  const match = pattern.exec(head)
  return match === null ? undefined : match[1]
}

const headPatterns = new Map<string, RegExp>()
