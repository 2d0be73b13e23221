import type { FastifyInstance, FastifyReply } from 'fastify'
import type { Readable } from 'node:stream'

// Streaming-safety warnings: a route that streams (the deadline's streaming mode, a proxy route)
// behind an onSend hook that buffers or rewrites its body (compression that does not exempt
// text/event-stream is one) delivers its events late, or never. The issue asks for the warning
// at `ready`, but nothing public tells there whether a hook replaces the payload: Fastify merges
// a route's hooks (the app's, its plugins', its own) into a context it keeps private; `findRoute`
// returns no context; `onRoute` sees only the route's own hooks, not `addHook` ones nor those a
// later onRoute hook appends (@fastify/compress's); `printRoutes({ includeHooks: true })` gives
// names only. And a name cannot tell a hook that sets a header and returns the payload (harmless)
// from one that returns another body. So each streaming route's first streamed response is
// watched, once: the stream the handler sent must be the one Fastify pipes into the response.
// After that verdict the route costs nothing more. The names, for the warning only, come from
// printRoutes' public listing.

/** onSend hooks of ours, or Fastify's own, that pass the payload through. */
const PASS_THROUGH = new Set(['markSending', 'headRouteOnSendHandler'])

type State = 'unchecked' | 'watching' | 'checked'

/**
 * Responses whose `reply.send` is watched before a route is left alone without a verdict: a
 * handler that writes on `reply.raw` (hijacked) or never sends a stream would otherwise pay a
 * wrapper on every request.
 */
const MAX_WATCHED_SENDS = 16

/** One route's (or one proxy registration's routes') check. */
export class StreamSafety {
  private state: State = 'unchecked'
  private watchedSends = 0

  constructor (private readonly app: FastifyInstance) {}

  get pending (): boolean {
    return this.state === 'unchecked'
  }

  /**
   * Follows what becomes of `sent`, the payload the handler gave `reply.send`. Only a Node stream
   * is judged (Fastify pipes it; a web stream or a string is not followed); a response that ends
   * before anything is decided (the client left early) leaves the route for the next one. HEAD
   * is not judged: Fastify's own HEAD handling consumes a stream and sends no body.
   */
  watch (reply: FastifyReply, sent: unknown): void {
    if (this.state !== 'unchecked' || typeof (sent as Readable | null)?.pipe !== 'function' || reply.request.method === 'HEAD') return
    this.state = 'watching'
    const stream = sent as Readable
    const res = reply.raw
    const onPipe = (piped: Readable): void => {
      res.off('close', onClose)
      this.state = 'checked'
      if (piped !== stream) this.warn(reply, 'rewritten on its way out')
    }
    const onClose = (): void => {
      res.off('pipe', onPipe)
      // Read by someone, never piped into the response: a hook collected it.
      if (!stream.readableDidRead) {
        this.state = 'unchecked'
        return
      }
      this.state = 'checked'
      this.warn(reply, 'buffered: it never reached the client as a stream')
    }
    res.once('pipe', onPipe)
    res.once('close', onClose)
  }

  /**
   * Sets `reply.send` to watch the payload of this one response (routes whose handler sends the
   * stream itself); the wrapper removes itself at its first call.
   */
  watchSend (reply: FastifyReply): void {
    if (++this.watchedSends > MAX_WATCHED_SENDS) {
      this.state = 'checked'
      return
    }
    const send = reply.send
    const safety = this
    reply.send = function watchedSend (this: FastifyReply, payload?: unknown): FastifyReply {
      reply.send = send
      safety.watch(reply, payload)
      return send.call(this, payload)
    }
  }

  private warn (reply: FastifyReply, what: string): void {
    const { method } = reply.request
    const url = reply.request.routeOptions.url ?? reply.request.url
    const hooks = onSendHooks(this.app, method, url)
    const encoding = reply.getHeader('content-encoding')
    const by = encoding !== undefined
      ? `compression (Content-Encoding: ${String(encoding)}; exempt text/event-stream from it)`
      : hooks.length === 1 ? `onSend hook ${hooks[0]}` : `one of its onSend hooks (${hooks.join(', ') || 'unnamed'})`
    this.app.log.warn({ route: `${method} ${url}`, onSend: hooks }, `streaming route ${method} ${url}: its body is ${what}, by ${by}; events are delayed or lost`)
  }
}

/**
 * The names of a route's onSend hooks, other than pass-through ones, from printRoutes' listing
 * (a tree: each node's path segment, its methods, then `• (onSend) [names]`). Empty when the
 * listing has no such route (its format is for humans, and may change).
 */
export function onSendHooks (app: FastifyInstance, method: string, url: string): string[] {
  const listing = app.printRoutes({ includeMeta: ['onSend'], commonPrefix: false, method: method as 'GET' })
  const path: string[] = []
  let found = false
  for (const line of listing.split('\n')) {
    const match = /^((?:[│ ] {3})*)([├└]── )?(.*)$/.exec(line) as RegExpExecArray
    const depth = match[1].length / 4
    const text = match[3]
    if (text.startsWith('• (onSend) ')) {
      if (found) return names(text.slice('• (onSend) '.length))
      continue
    }
    const route = /^(.*?) \([A-Z, ]+\)/.exec(text)
    const segment = route === null ? text : route[1]
    if (match[2] !== undefined) path.splice(depth, path.length, segment)
    found = route !== null && path.join('') === url
  }
  return []
}

function names (json: string): string[] {
  try {
    const list = JSON.parse(json) as string[]
    return list.map(name => name.replace(/\(\)$/, '')).filter(name => !PASS_THROUGH.has(name))
  } catch {
    return []
  }
}
