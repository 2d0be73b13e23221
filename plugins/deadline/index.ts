import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { activeDeadline, kDeadline, setActiveDeadline } from './access.js'
import { resolvePluginOptions, resolveRouteOptions } from './options.js'
import type { DeadlineSettings } from './types.js'
import { UNLIMITED, type ActiveDeadline } from './request-deadline.js'
import type { DeadlineOptions, RequestDeadline } from './types.js'
import type { CheckQueue } from './check-queue.js'
import { routeQueue, watch } from './watch.js'
import { asArray } from '../../lib/as-array.js'
import { StreamSafety } from '../../lib/stream-safety.js'

export type { DeadlineOptions, RouteDeadlineOptions, RouteDeadlineConfig, RequestDeadline, DeadlinePhase } from './types.js'
export { DeadlineExceededError, ClientDisconnectedError, InvalidDeadlineOptionError } from './errors.js'
export { budgetLeft, deadlineHeaders, onRequestAbort, releaseDeadline, requestSignal, writeFiller } from './access.js'
export type { AbortListener } from './listeners.js'

async function deadlinePlugin (app: FastifyInstance, options: DeadlineOptions): Promise<void> {
  const base = resolvePluginOptions(options)
  app.decorateRequest(kDeadline, null)
  app.decorateRequest('deadline', {
    getter (this: FastifyRequest): RequestDeadline {
      return activeDeadline(this) ?? UNLIMITED
    }
  })
  // One first-check queue per distinct settings: routes without overrides share the plugin's.
  const queues = new Map<DeadlineSettings, CheckQueue<ActiveDeadline> | null>()
  app.addHook('onClose', async () => { for (const queue of queues.values()) queue?.close() })
  // Route-level hooks, added per route: an opted-out route gets none and pays nothing.
  app.addHook('onRoute', (route: RouteOptions) => {
    const config = route.config?.deadline
    if (config === false) return
    const settings = resolveRouteOptions(base, config)
    let queue = queues.get(settings)
    if (queue === undefined) queues.set(settings, queue = routeQueue(settings))
    // A streaming route's first streamed response is checked for hooks that buffer or rewrite it.
    const safety = settings.streaming ? new StreamSafety(app) : null
    route.onRequest = [startHook(settings, queue, safety), ...asArray(route.onRequest)]
    route.onSend = [markSending, ...asArray(route.onSend)]
  })
}

function startHook (settings: DeadlineSettings, queue: CheckQueue<ActiveDeadline> | null, safety: StreamSafety | null) {
  return function startDeadline (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    setActiveDeadline(request, watch(request, reply, settings, queue))
    if (safety?.pending === true) safety.watchSend(reply)
    done()
  }
}

// onSend runs just before the headers go out, possibly through async hooks: from here on the
// response has begun and a 504 must not race it.
function markSending (request: FastifyRequest, _reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void): void {
  const deadline = activeDeadline(request)
  if (deadline !== null) deadline.sending = true
  done(null, payload)
}

const deadline = fp(deadlinePlugin, { name: 'fastify-streamline-deadline', fastify: '5.x' })
export default deadline
