import type { Server, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import { EventBoundary } from './sse-boundary.js'

// What `app.close()` does to proxied traffic. Fastify alone only closes idle connections, so
// a stream from an upstream that never ends would keep close() pending forever:
// - the listening socket closes at once, before any other preClose hook can delay it;
// - keep-alive connections are closed as soon as they are idle (Fastify answers a request that
//   arrives meanwhile with `Connection: close`);
// - proxied event streams end at the next event boundary, after an optional `retry:` field;
// - whatever is still open `drainTimeout` after the start (downloads, slow answers, the app's
//   own streams) is cut: its socket is destroyed, so no client mistakes it for a complete body.

/** How often idle keep-alive connections are looked for: Node closes them only once, in server.close(). */
const IDLE_POLL_MS = 250

/** One proxied event stream, followed from the moment Fastify pipes it to the client. */
class EventStreamRelay {
  private readonly boundary = new EventBoundary()
  private ending = false

  constructor (private readonly body: Readable, private readonly res: ServerResponse, private readonly retry: Buffer | null) {
    this.onData = this.onData.bind(this)
    // Added after Fastify's pipe listener (this runs on 'pipe'), so it sees each chunk just after it was written.
    body.on('data', this.onData)
  }

  /** Ends the stream at the current boundary, or at the next one the upstream sends. */
  drain (): void {
    // Already finished or cut (its 'close' has not fired yet).
    if (this.ending || this.res.writableEnded || this.res.destroyed) return
    this.ending = true
    // From here on the chunks are written here, so that a chunk can be cut at an event's end.
    this.body.unpipe(this.res)
    if (this.boundary.atBoundary) this.finish(null)
    else this.body.resume()
  }

  private onData (chunk: Buffer): void {
    if (!this.ending) {
      this.boundary.pass(chunk)
      return
    }
    const end = this.boundary.endIn(chunk)
    if (end === -1) {
      this.res.write(chunk)
      this.boundary.pass(chunk)
    } else {
      this.finish(chunk.subarray(0, end))
    }
  }

  private finish (last: Buffer | null): void {
    this.body.off('data', this.onData)
    this.body.pause()
    if (last !== null) this.res.write(last)
    if (this.retry !== null) this.res.write(this.retry)
    // A complete response: Fastify then destroys the upstream body, which closes the upstream request.
    this.res.end()
  }
}

/** The proxied event streams of one registration; nothing is tracked for other responses. */
export class ProxyDrain {
  private readonly streams = new Set<EventStreamRelay>()
  private readonly retry: Buffer | null
  private draining = false

  constructor (retryMs: number | false) {
    this.retry = retryMs === false ? null : Buffer.from(`retry: ${retryMs}\n\n`)
  }

  /** Follows an event-stream body once it is piped to the client (Fastify may run onSend hooks first). */
  watchEventStream (reply: FastifyReply, body: Readable): void {
    reply.raw.once('pipe', () => {
      const relay = new EventStreamRelay(body, reply.raw, this.retry)
      // Answered during the drain (a request that was already waiting for its upstream).
      if (this.draining) return relay.drain()
      this.streams.add(relay)
      reply.raw.once('close', () => this.streams.delete(relay))
    })
  }

  start (): void {
    this.draining = true
    for (const relay of this.streams) relay.drain()
    this.streams.clear()
  }
}

interface ServerDrain {
  until: number
  cut: NodeJS.Timeout | undefined
}

// One per server, shared by every proxy registration: the longest drainTimeout wins.
const serverDrains = new WeakMap<Server, ServerDrain>()

/** Stops accepting, closes keep-alive connections as they go idle, cuts the rest after `timeout` ms. */
export function drainServer (server: Server, timeout: number, log: FastifyBaseLogger): void {
  let drain = serverDrains.get(server)
  if (drain === undefined) {
    drain = startServerDrain(server)
    serverDrains.set(server, drain)
  }
  const until = Date.now() + timeout
  if (until <= drain.until) return
  drain.until = until
  clearTimeout(drain.cut)
  drain.cut = setTimeout(cutConnections, timeout, server, timeout, log).unref()
}

function startServerDrain (server: Server): ServerDrain {
  const drain: ServerDrain = { until: 0, cut: undefined }
  // Fastify closes the server only after every preClose hook, some of which may wait; closing
  // it here refuses new connections at once. Fastify's own close() call later still gets its
  // callback when the last connection ends.
  if (server.listening) server.close()
  // HTTP/2 servers have no idle HTTP/1 connections to close.
  const poll = typeof server.closeIdleConnections === 'function'
    ? setInterval(() => server.closeIdleConnections(), IDLE_POLL_MS).unref()
    : undefined
  server.once('close', () => {
    clearInterval(poll)
    clearTimeout(drain.cut)
  })
  return drain
}

function cutConnections (server: Server, timeout: number, log: FastifyBaseLogger): void {
  if (typeof server.closeAllConnections !== 'function') return
  log.warn({ drainTimeout: timeout }, 'drain timeout reached: cutting the connections still open')
  server.closeAllConnections()
}
