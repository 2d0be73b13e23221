import type { ServerResponse } from 'node:http'
import { constants, type Http2Stream } from 'node:http2'
import { addAbortSignal, type Duplex } from 'node:stream'

/** The HTTP/2 stream behind a compatibility response (`reply.raw` over h2); undefined over HTTP/1.x. */
export function http2Stream (res: ServerResponse): Http2Stream | undefined {
  return (res as unknown as { stream?: Http2Stream }).stream
}

const kCut = Symbol('fastify-streamline.cut')

type CutResponse = ServerResponse & { [kCut]?: true }

/**
 * Ends a response so that the client cannot mistake what it got for a whole body. Over
 * HTTP/1.1 that is destroying the connection. Over HTTP/2, `destroy()` resets the stream with
 * NO_ERROR, which a client reads as a normal end; INTERNAL_ERROR is what it must see instead
 * (nginx and Go's proxy send the same when an upstream fails mid-body). Only that stream goes.
 * The response is marked, so that its close is not taken for the client's doing.
 */
export function cutResponse (res: ServerResponse): void {
  (res as CutResponse)[kCut] = true
  const stream = http2Stream(res)
  if (stream === undefined) res.destroy()
  else if (!stream.closed) stream.close(constants.NGHTTP2_INTERNAL_ERROR)
}

/**
 * Whether a response that closed was cut short by its client. Over HTTP/2 a stream the
 * client reset (RST_STREAM) still reports `writableFinished`; only a non-zero `rstCode`
 * tells it from a stream that completed (NGHTTP2_NO_ERROR).
 */
export function closedByClient (res: ServerResponse): boolean {
  if ((res as CutResponse)[kCut] === true) return false
  if (!res.writableFinished) return true
  const code = http2Stream(res)?.rstCode
  return code !== undefined && code !== 0
}

// Aborted once, shared: `addAbortSignal` with an aborted signal destroys at once, adding nothing.
const ABORTED = AbortSignal.abort()

/**
 * Ends a connection or an HTTP/2 stream abruptly (a WebSocket tunnel's side). A socket is
 * destroyed. A stream is reset with CANCEL, RFC 8441's mapping of a TCP reset: `destroy()`
 * resets it with NO_ERROR, which reads as an orderly end, and `close(CANCEL)` ends the
 * writable side first, so the END_STREAM can reach the client before the RST_STREAM. Node
 * resets with CANCEL, and nothing before it, a stream destroyed with an AbortError, which
 * is what `addAbortSignal` does with an aborted signal.
 */
export function abortSide (side: Duplex): void {
  if (side.destroyed) return
  if ('rstCode' in side) addAbortSignal(ABORTED, side)
  else side.destroy()
}
