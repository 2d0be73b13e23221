import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ServerResponse } from 'node:http'
import { clientDisconnected, type ClientDisconnectedMessage } from '../../lib/diagnostics.js'
import { CheckQueue } from './check-queue.js'
import { ClientDisconnectedError } from './errors.js'
import { expire } from './expire.js'
import type { DeadlineSettings } from './types.js'
import { incomingBudget } from './propagation.js'
import { closedByClient } from '../../lib/abrupt-end.js'
import { ActiveDeadline } from './request-deadline.js'

// How often a flowing stream is sampled, as a fraction of streamIdleTimeout: a stall is cut
// between 1x and 1.5x the idle timeout (a write can land just after a sample, and the expiry
// is seen at the next one), for 4 cheap timer runs per idle period.
const IDLE_SAMPLES = 4

/** The queue a route's requests wait in for their first check, or null when nothing is ever checked. */
export function routeQueue (settings: DeadlineSettings): CheckQueue<ActiveDeadline> | null {
  const idle = settings.streamIdleTimeout > 0 ? settings.streamIdleTimeout / IDLE_SAMPLES : Infinity
  const lifetime = settings.maxStreamDuration > 0 ? settings.maxStreamDuration : Infinity
  const timeout = !settings.streaming && settings.timeout > 0 ? settings.timeout : Infinity
  const offset = Math.min(timeout, idle, lifetime)
  return offset === Infinity ? null : new CheckQueue(offset, checkInScope)
}

/**
 * Starts watching one request. Its first check waits in the route's queue (most requests end
 * before it comes); after that, or when a caller shortened its budget, or when app hooks held it
 * long before it got here, it has one timer of its own, re-armed as the request moves through its phases.
 */
export function watch (request: FastifyRequest, reply: FastifyReply, settings: DeadlineSettings, queue: CheckQueue<ActiveDeadline> | null): ActiveDeadline {
  const now = Date.now()
  // Fastify stamped the arrival before the app's own onRequest hooks ran; count their time too.
  const arrival = Math.round(now - reply.elapsedTime)
  const budget = responseBudget(request, settings)
  const deadline = new ActiveDeadline(request, reply, settings, arrival, budget)
  const res = reply.raw as WatchedResponse
  res[kResponseDeadline] = deadline
  // `on`, not `once`: close fires once per response, and `once` costs a wrapper and a removal.
  res.on('close', closeDeadline)
  // The queue's first check comes `offset` ms after arrival, the route's shortest period: only a
  // budget a trusted caller cut below it needs an earlier one, on a timer of its own.
  const queued = queue !== null && budget >= queue.offset && queue.add(deadline)
  if (!queued) schedule(deadline, now)
  return deadline
}

/** ms from arrival until the response must have started: `timeout` (shortened by a trusted caller), or the first idle period for streaming routes. */
function responseBudget (request: FastifyRequest, settings: DeadlineSettings): number {
  const lifetime = settings.maxStreamDuration > 0 ? settings.maxStreamDuration : Infinity
  if (settings.streaming) return Math.min(settings.streamIdleTimeout > 0 ? settings.streamIdleTimeout : Infinity, lifetime)
  let budget = settings.timeout > 0 ? settings.timeout : Infinity
  const incoming = incomingBudget(request, settings)
  if (incoming !== undefined && incoming < budget) budget = incoming
  return Math.min(budget, lifetime)
}

function schedule (deadline: ActiveDeadline, now: number): void {
  const at = nextCheck(deadline, now)
  if (at !== Infinity) deadline.timer = setTimeout(check, Math.max(0, at - now), deadline)
}

function nextCheck (deadline: ActiveDeadline, now: number): number {
  const idle = deadline.settings.streamIdleTimeout
  if (idle === 0) return Math.min(deadline.phase === 'response' ? deadline.expiresAt : Infinity, deadline.lifetimeAt)
  if (deadline.phase === 'response') {
    // A response that takes long to start is also looked at every idle/4, so that the idle
    // clock starts soon after its headers go out rather than at the end of `timeout`.
    return Math.min(deadline.expiresAt, now + idle / IDLE_SAMPLES, deadline.lifetimeAt)
  }
  return Math.min(deadline.lastProgressAt + idle, now + idle / IDLE_SAMPLES, deadline.lifetimeAt)
}

/** The timer's callback: decides between expiring, switching phase and sampling again. */
function check (deadline: ActiveDeadline): void {
  deadline.timer = null
  if (deadline.phase === 'done') return
  const now = Date.now()
  if (now >= deadline.lifetimeAt) return expire(deadline, 'lifetime', now)
  const res = deadline.reply.raw
  const started = res.headersSent || deadline.sending
  if (deadline.phase === 'response') {
    if (!started) {
      if (now >= deadline.expiresAt) return expire(deadline, 'response', now)
    } else {
      // Headers are out: from now on only stalls count, however long the body takes.
      deadline.phase = 'stream'
      deadline.lastBytes = deadline.progress()
      deadline.lastProgressAt = now
    }
    return schedule(deadline, now)
  }
  const bytes = deadline.progress()
  if (bytes !== deadline.lastBytes) {
    deadline.lastBytes = bytes
    deadline.lastProgressAt = now
  } else if (deadline.settings.streamIdleTimeout > 0 && now - deadline.lastProgressAt >= deadline.settings.streamIdleTimeout) {
    return expire(deadline, 'idle', now)
  }
  schedule(deadline, now)
}

/** Runs a queued check in the request's own async context, where it has one (see ActiveDeadline.scope). */
function checkInScope (deadline: ActiveDeadline): void {
  if (deadline.scope === null) check(deadline)
  else deadline.scope.runInAsyncScope(check, null, deadline)
}

/**
 * Where a response keeps its deadline for `closeDeadline`, the one `close` listener every response
 * shares: a closure per request over its deadline measured 1.7k more instructions per request
 * (callgrind, hello world) than this property. One deadline per response: the plugin's request
 * decorator cannot be registered twice on one route.
 */
const kResponseDeadline = Symbol('fastify-streamline.response-deadline')

type WatchedResponse = ServerResponse & { [kResponseDeadline]?: ActiveDeadline }

function closeDeadline (this: WatchedResponse): void {
  const deadline = this[kResponseDeadline]
  if (deadline !== undefined) onClose(deadline)
}

/** `close` fires for every response: after `finish` when it completed, without it when the client left. */
function onClose (deadline: ActiveDeadline): void {
  if (deadline.phase === 'done') return
  deadline.stop()
  const res = deadline.reply.raw
  if (!closedByClient(res)) return
  deadline.abort(new ClientDisconnectedError())
  if (clientDisconnected.hasSubscribers) {
    const message: ClientDisconnectedMessage = { request: deadline.request, phase: res.headersSent ? 'stream' : 'response', elapsed: Date.now() - deadline.arrival }
    clientDisconnected.publish(message)
  }
}
