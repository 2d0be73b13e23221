import { errors, util, type Dispatcher } from 'undici'
import { IncomingMessage } from 'node:http'
import type { Readable } from 'node:stream'
import type { FastifyRequest } from 'fastify'
import type { UpstreamCall } from './call.js'
import { quietLine } from '../../../lib/quiet-line.js'
import { isEventStreamType } from '../../../lib/event-stream.js'
import { UpstreamBody } from './body.js'
import { EventStreamBody } from './event-stream-body.js'
import { ResumableEventStream } from './sse-resume.js'
import { mayResumeDownload, ResumableDownload } from './download-resume.js'
import { GrpcBody, isGrpcBody } from './grpc-body.js'
import type { Replica } from './replica.js'
import { FAILOVER_STATUS, neverReachedUpstream } from '../upstream-errors.js'
import { noteCancelled, sessionOf, type CountedSession } from './cancelled-streams.js'

// undici's `request()` API wraps each call in a RequestHandler: an AsyncResource, an abort
// listener on the signal, and a body stream that is piped into the response. A small proxied
// GET spent about a quarter of its CPU there. This handler does the same job on undici's
// `dispatch()` API, which undici's `request()` is itself built on, with two differences:
// - the cancellation is the call's own signal, which calls the handler directly;
// - a body that is small, of known length and whole in the same socket read as its head is
//   handed over as one Buffer, which Fastify sends with the head in one write, instead of a
//   stream. Nothing waits for it: the choice is made in a microtask, after undici has parsed
//   that read and before the event loop turns. Anything else is a stream, at once.

/** Bodies up to this size may be handed over whole: one socket read. */
const WHOLE_BODY_LIMIT = 64 * 1024

export interface UpstreamData {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  body: Readable | Buffer
}

export type UpstreamCallback = (err: Error | null, data: UpstreamData | null) => void

/**
 * The operator's own `headersTimeout` and `bodyTimeout` (0: off), kept here to the millisecond:
 * undici runs its own on a clock of 1 s resolution, so `headersTimeout: 300` fired after a
 * second. One timer per attempt, made only when one is set, moved on by each chunk.
 */
export interface AttemptTimeouts {
  headersTimeout: number
  bodyTimeout: number
}

/**
 * What reply-from then hands to `onResponse` and `retryDelay` (its type says ServerResponse):
 * the same answer, its body renamed `stream`. A small body that came whole is a Buffer, and
 * only for the proxy's own relay: a user's onResponse always gets a stream.
 */
export interface UpstreamResponse {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  stream: Readable | Buffer
}

interface PendingHead {
  statusCode: number
  headers: Record<string, string | string[] | undefined>
  chunks: Buffer[]
  complete: boolean
}

function noop (): void {}

export class UpstreamHandler implements Dispatcher.DispatchHandler {
  private abortUpstream: ((reason?: Error) => void) | null = null
  private body: UpstreamBody | null = null
  private pending: PendingHead | null = null
  private timer: NodeJS.Timeout | null = null
  /** The pool's replica this attempt went to, counted in flight until the attempt is over (pools only). */
  replica: Replica | null = null
  /** Where a cancel by the client is counted (cancelled-streams.ts); undefined over HTTP/1.1. */
  readonly session: CountedSession | undefined

  constructor (private readonly call: UpstreamCall, private callback: UpstreamCallback | null,
    private readonly method: string, private requestBody: unknown, private readonly timeouts: AttemptTimeouts) {
    this.session = sessionOf(call.request)
  }

  onConnect (abort: (reason?: Error) => void): void {
    const { signal } = this.call
    // Cancelled while it waited for its connection: nothing is written yet. A throw makes undici
    // drop the request and keep the connection for the next one; abort() would destroy the fresh
    // connection, so each stream reset before its write cost the upstream a connect (issue 19).
    if (signal.aborted) {
      const reason = signal.reason as Error
      throw reason
    }
    this.abortUpstream = abort
    signal.attempt = this
    if (this.timeouts.headersTimeout > 0) this.timer = setTimeout(timeOut, this.timeouts.headersTimeout, this)
  }

  /**
   * This attempt's timer ran out. Before the head: the headers timeout (a 504). After it: that
   * long without a chunk (a cut), unless the client is the one not reading (undici paused the
   * upstream for it), as undici's own bodyTimeout does.
   */
  timedOut (): void {
    const timer = this.timer
    this.timer = null
    if (this.body === null && this.pending === null) {
      this.abortUpstream?.(new errors.HeadersTimeoutError())
    } else if (this.body !== null && this.body.readableLength >= this.body.readableHighWaterMark && timer !== null) {
      this.timer = timer.refresh()
    } else {
      this.abortUpstream?.(new errors.BodyTimeoutError())
    }
  }

  /** The call's signal aborted: undici cancels the request before headers, or the body after. */
  abort (reason: Error): void {
    if (this.body === null) this.abortUpstream?.(reason)
    // A client that left is ordinary: its response is gone, and Fastify, seeing the body end
    // early rather than fail, logs it as over HTTP/1.1 (once, at info). An error here would be
    // a warn line per cancelled HTTP/2 stream, which any client could write at will.
    else if (clientLeft(reason)) this.body.destroy()
    else this.body.fail(reason)
  }

  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true
    if (this.replica !== null) this.settleReplica(FAILOVER_STATUS.has(statusCode))
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = this.timeouts.bodyTimeout > 0 ? setTimeout(timeOut, this.timeouts.bodyTimeout, this) : null
    const headers = util.parseHeaders(rawHeaders) as UpstreamData['headers']
    if (this.call.wholeBody && this.mayComeWhole(headers)) {
      this.pending = { statusCode, headers, chunks: [], complete: false }
      queueMicrotask(() => this.respond(resume))
      return true
    }
    this.stream(statusCode, headers, resume)
    return true
  }

  onData (chunk: Buffer): boolean {
    if (this.timer !== null) this.timer.refresh()
    if (this.body !== null) return this.body.deliver(chunk)
    this.pending?.chunks.push(chunk)
    return true
  }

  /** HTTP/1.1 hands trailers over raw (name, value, ...); HTTP/2 as the object node:http2 parsed (`{}`: none). */
  onComplete (rawTrailers: Array<Buffer | string> | UpstreamData['headers'] | null): void {
    this.detach()
    if (rawTrailers !== null) this.call.trailers = receivedTrailers(rawTrailers)
    if (this.body !== null) this.body.complete()
    else if (this.pending !== null) this.pending.complete = true
  }

  onError (err: Error): void {
    const replica = this.replica
    // Before the head: the replica's failure, unless the client left (no fault of the replica's).
    if (replica !== null && this.body === null && this.pending === null) this.settleReplica(!clientLeft(this.call.signal.reason ?? err))
    this.detach()
    // A head already known is answered as a stream, then cut, as when the body fails later.
    if (this.pending !== null) this.respond(noop)
    const { callback, body } = this
    if (callback !== null) {
      this.callback = null
      if (clientLeft(err)) noteCancelled(this.session)
      // The send is over: reply-from's onError may send again (a fallback), which is not a double send.
      this.call.sending = false
      quietReplyFromFailure(this.call.request)
      queueMicrotask(() => callback(err, null))
    } else if (body !== null) {
      this.body = null
      // After the handlers already queued: the client gets what arrived before the failure.
      queueMicrotask(() => body.fail(err))
    }
    // A body the replica never saw stays whole for the failover to send to another.
    if (replica === null || !neverReachedUpstream(err)) this.destroyRequestBody(err)
  }

  /** Passive health: whether the replica failed this attempt (pool.ts). */
  private settleReplica (failed: boolean): void {
    const pool = this.call.pool as NonNullable<UpstreamCall['pool']>
    if (failed) pool.failed(this.replica as Replica)
    else pool.succeeded(this.replica as Replica)
  }

  /**
   * Small, of known length, with a type (Fastify would add one to a Buffer), not HEAD, and no
   * upload still streaming: an early answer (a 413) must go out while the upload is still being cut.
   */
  private mayComeWhole (headers: UpstreamData['headers']): boolean {
    const length = Number(headers['content-length'])
    return length > 0 && length <= WHOLE_BODY_LIMIT && headers['content-type'] !== undefined &&
      this.method !== 'HEAD' && typeof (this.requestBody as Readable | null)?.pipe !== 'function'
  }

  private stream (statusCode: number, headers: UpstreamData['headers'], resume: () => void): UpstreamBody {
    const abort = (reason?: Error): void => this.abortUpstream?.(reason)
    const type = headers['content-type']
    const body = isEventStreamType(type) ? eventStream(this.call, statusCode, resume, abort) : isGrpcBody(type) ? new GrpcBody(resume, abort) : plainBody(this.call, this.method, statusCode, headers, resume, abort)
    this.body = body
    this.hand(statusCode, headers, body)
    return body
  }

  /** After the read that carried the head: the whole body, or a stream of what came so far. */
  private respond (resume: () => void): void {
    const { pending } = this
    if (pending === null) return
    this.pending = null
    const { statusCode, headers, chunks, complete } = pending
    // reply-from destroys the body of a request whose client left: that needs a stream.
    if (complete && this.call.request.raw.aborted !== true) {
      this.hand(statusCode, headers, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks))
      return
    }
    const body = this.stream(statusCode, headers, resume)
    for (const chunk of chunks) body.deliver(chunk)
    if (complete) body.complete()
  }

  private hand (statusCode: number, headers: UpstreamData['headers'], body: Readable | Buffer): void {
    const { callback } = this
    this.callback = null
    // From here the reply is being sent (or a user's onResponse decides): a later send is refused
    // as a double one only once the reply has gone out (one-send.ts).
    this.call.sending = false
    callback?.(null, { statusCode, headers, body })
  }

  private detach (): void {
    if (this.call.signal.attempt === this) this.call.signal.attempt = null
    if (this.replica !== null) {
      (this.call.pool as NonNullable<UpstreamCall['pool']>).release(this.replica)
      this.replica = null
    }
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
  }

  /**
   * As undici does on failure: a request body still streaming is destroyed. An IncomingMessage
   * (the client's upload) is detached from its socket first, so destroying it does not destroy
   * the client's connection before the client has its answer (nodejs/node#38505).
   */
  private destroyRequestBody (err: Error): void {
    const body = this.requestBody as Readable | null
    this.requestBody = null
    if (body === null || typeof body?.pipe !== 'function' || body.destroyed) return
    if (body instanceof IncomingMessage) (body as { socket: unknown }).socket = null
    body.on('error', noop)
    body.destroy(err)
  }
}

function receivedTrailers (raw: Array<Buffer | string> | UpstreamData['headers']): UpstreamData['headers'] | null {
  if (Array.isArray(raw)) return raw.length > 0 ? util.parseHeaders(raw) as UpstreamData['headers'] : null
  // node:http2's object: own string keys only (its sensitive-headers list is a symbol key).
  return Object.keys(raw).length > 0 ? raw : null
}

/** An event stream's body: resumable after a cut when the call has `sseResume` (sse-resume.ts). */
function eventStream (call: UpstreamCall, statusCode: number, resume: () => void, abort: (reason?: Error) => void): EventStreamBody {
  const state = call.resume
  return state?.settings == null || statusCode !== 200 ? new EventStreamBody(resume, abort) : new ResumableEventStream(resume, abort, call, state, state.settings)
}

/** Any other body: resumable after a cut when the call has `resumeDownloads` and the response allows it (download-resume.ts). */
function plainBody (call: UpstreamCall, method: string, statusCode: number, headers: UpstreamData['headers'], resume: () => void,
  abort: (reason?: Error) => void): UpstreamBody {
  const state = call.resume
  const body = state?.downloads == null || !mayResumeDownload(statusCode, headers)
    ? new UpstreamBody(resume, abort)
    : new ResumableDownload(resume, abort, headers, call, state, state.downloads)
  body.expect(declaredLength(method, statusCode, headers))
  return body
}

/** The body length a response's head declares, -1 for none (a HEAD's, a 204's and a 304's body is empty whatever it says). */
function declaredLength (method: string, statusCode: number, headers: UpstreamData['headers']): number {
  if (method === 'HEAD' || statusCode === 204 || statusCode === 304) return -1
  const length = Number(headers['content-length'])
  return Number.isSafeInteger(length) && length >= 0 ? length : -1
}

function timeOut (handler: UpstreamHandler): void {
  handler.timedOut()
}

function clientLeft (reason: Error): boolean {
  return (reason as { code?: unknown }).code === 'FST_STREAMLINE_CLIENT_DISCONNECTED'
}

/**
 * reply-from logs every failed upstream call at warn ('response errored') before it answers. The
 * failure is logged once already, with what the client was told: by the proxy's onError (an
 * upstream fault at warn, a client that left at info) or by the deadline plugin (its expiry line).
 */
function quietReplyFromFailure (request: FastifyRequest): void {
  request.log = quietLine(request.log, 'warn', 'response errored', () => true)
}
