import type { FastifyReply } from 'fastify'
import type { ServerResponse } from 'node:http'
import { writeFiller } from '../../deadline/index.js'
import { http2Stream } from '../../../lib/abrupt-end.js'
import type { EventStreamBody } from '../upstream/event-stream-body.js'

// Quiet event streams are cut by intermediaries (nginx after 60 s, load balancers) long before
// any timer of ours fires; a comment line keeps them open and every SSE client ignores it.
const COMMENT = Buffer.from(':\n\n')

/** One proxied event stream under watch: when the sweep last saw it relay something. */
interface Watched {
  relay: EventStreamBody
  reply: FastifyReply
  seen: number
  quietSince: number
}

/**
 * The `sseHeartbeat` option of one registration: a comment block on each of its event streams
 * that has been silent that long. One timer for all of them, sweeping every half period, so a
 * heartbeat follows between 1 and 1.5 periods of silence; it runs only while streams are open.
 */
export class SseHeartbeat {
  private readonly streams = new Set<Watched>()
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly period: number) {}

  watch (relay: EventStreamBody, reply: FastifyReply): void {
    const watched: Watched = { relay, reply, seen: 0, quietSince: 0 }
    this.streams.add(watched)
    relay.once('close', () => this.forget(watched))
    if (this.timer === null) {
      this.timer = setInterval(() => this.sweep(), Math.max(1, Math.floor(this.period / 2)))
      this.timer.unref()
    }
  }

  private forget (watched: Watched): void {
    this.streams.delete(watched)
    if (this.streams.size > 0 || this.timer === null) return
    clearInterval(this.timer)
    this.timer = null
  }

  private sweep (): void {
    const now = Date.now()
    for (const watched of this.streams) {
      const relayed = watched.relay.relayed
      if (relayed !== watched.seen) {
        watched.seen = relayed
        watched.quietSince = now
      } else if (relayed > 0 && now - watched.quietSince >= this.period && beat(watched)) {
        watched.quietSince = now
      }
    }
  }
}

/** Writes a heartbeat if nothing forbids it now; whether it did. */
function beat ({ relay, reply }: Watched): boolean {
  // Checked when due, not when the stream starts: an onSend hook may set it after the upstream's head.
  if (reply.getHeader('content-encoding') !== undefined) return false
  if (!relay.betweenEvents || !clientReading(reply.raw)) return false
  writeFiller(reply.request, reply, COMMENT)
  relay.heartbeatBytes += COMMENT.length
  return true
}

/**
 * Whether the response can take more bytes now: not ended, and not held up by a client that
 * is not reading (its last write said to wait for 'drain'). Over HTTP/2 the compatibility
 * response has no `writableNeedDrain`; its stream does.
 */
function clientReading (res: ServerResponse): boolean {
  const writable = http2Stream(res) ?? res
  return !res.writableEnded && !writable.destroyed && !writable.writableNeedDrain
}
