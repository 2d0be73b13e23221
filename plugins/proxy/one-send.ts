import replyFrom, { type FastifyReplyFromHooks, type FastifyReplyFromOptions } from '@fastify/reply-from'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { startCall, type Registration } from './forward.js'
import { attachCall, callOf, setCall, type UpstreamCall } from './upstream/call.js'
import type { UpstreamTarget } from './target.js'

// One upstream send per request, tied to it. An async hook that calls `reply.from()` without
// returning the reply lets Fastify run the route's handler too, which sends again: two upstream
// requests, one of them cancelled by nobody when the client leaves. And a `reply.from(url)` made
// without the proxy's options carries nothing the dispatcher could find its request by (it sees
// only the options reply-from builds: a copy of the client's headers, no request).
//
// So the proxy context's `reply.from` is reply-from's, wrapped: it knows its reply, hence its
// request. It refuses a second send while the first is on its way (or once the reply went out),
// with one warning naming the fix, and ties a send made with other options to the request's call,
// so that the client leaving or the deadline cancels it like the proxy's own. The wrapper is
// installed when reply-from decorates the reply (Fastify forbids decorating `from` twice in one
// context, and an outer context's decorator is not reachable from an inner one), and costs the
// default path a call and a few property reads: no closure or object per request. Recognising the request in
// the dispatcher instead would need something on the client's headers object (a write per request
// on every route), or an AsyncLocalStorage (async hooks for the whole process).

type From = (this: FastifyReply, source?: string, options?: FastifyReplyFromHooks) => FastifyReply

const DOUBLE_SEND = 'reply.from called again for a request whose upstream call is on its way or whose reply was sent; ' +
  'this send is dropped. A hook that sends must return the reply (`return reply.from(...)`): otherwise Fastify runs the route\'s handler too'

/** A call started by a `reply.from` without the proxy's options: no mapping of ours applies to it. */
const UNMAPPED: UpstreamTarget = Object.freeze({ origin: '', pathname: '', search: '' })

/** Registers reply-from on the proxy's context, its `reply.from` wrapped by `oneSend`. */
export async function registerReplyFrom (instance: FastifyInstance, registration: Registration, options: FastifyReplyFromOptions): Promise<void> {
  const decorateReply = instance.decorateReply as (this: FastifyInstance, name: string, fn: unknown, ...rest: unknown[]) => FastifyInstance
  // An own property for the time of the registration only: reply-from is a fastify-plugin, so it
  // decorates this very context, through this method.
  const wrapping = function (this: FastifyInstance, name: string, fn: unknown, ...rest: unknown[]): FastifyInstance {
    return decorateReply.call(this, name, name === 'from' ? oneSend(registration, fn as From) : fn, ...rest)
  }
  const own = Object.getOwnPropertyDescriptor(instance, 'decorateReply')
  Object.defineProperty(instance, 'decorateReply', { value: wrapping, configurable: true, writable: true })
  try {
    await instance.register(replyFrom, options)
  } finally {
    if (own === undefined) delete (instance as Partial<FastifyInstance>).decorateReply
    else Object.defineProperty(instance, 'decorateReply', own)
  }
}

/** reply-from's `from`, sending at most once per request, tied to the request's call. */
function oneSend (registration: Registration, from: From): From {
  const proxyRewrite = registration.fromOptions.rewriteRequestHeaders
  return function sendOnce (this: FastifyReply, source, options) {
    const call = callOf(this.request)
    if (call !== null && (call.sending || call.signal.aborted)) return refuse(this, call)
    if (this.raw.headersSent || this.sent) return refuse(this, call)
    // The proxy's options (the route's handler, fromParameters): their rewriteRequestHeaders ties the call.
    if (options?.rewriteRequestHeaders === proxyRewrite) return from.call(this, source, options)
    return from.call(this, source, tiedOptions(registration, this, call, options))
  }
}

/**
 * Drops a second send, with one warning per request; none once the request was cancelled: Fastify
 * runs the route's handler after a hook that returned the reply if the client left mid-response
 * (the reply never ended), and that send has no one to answer.
 */
function refuse (reply: FastifyReply, call: UpstreamCall | null): FastifyReply {
  if (call?.signal.aborted === true) return reply
  if (call === null || !call.warned) {
    if (call !== null) call.warned = true
    reply.request.log.warn({ code: 'FST_STREAMLINE_PROXY_DOUBLE_SEND' }, DOUBLE_SEND)
  }
  return reply
}

/**
 * Options for a send made without the proxy's options: the user's, with the request's call
 * (started here if none is yet) attached to the upstream headers for the dispatcher to find.
 * Not the default path: these copies are made only for such sends.
 */
function tiedOptions (registration: Registration, reply: FastifyReply, found: UpstreamCall | null, options: FastifyReplyFromHooks | undefined): FastifyReplyFromHooks {
  const { request } = reply
  let call = found
  if (call === null) {
    call = startCall(registration, request, reply, registration.target, UNMAPPED, request.url)
    setCall(request, call)
  }
  // The user's onResponse, or reply-from's own send, expects a stream.
  call.wholeBody = false
  const tied = call
  const rewrite = options?.rewriteRequestHeaders
  return {
    ...options,
    rewriteRequestHeaders (req, headers) {
      const sent = rewrite === undefined ? headers : rewrite(req, headers)
      attachCall(sent, tied)
      return sent
    }
  }
}
