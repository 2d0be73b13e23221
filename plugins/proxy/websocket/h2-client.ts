import type { FastifyRequest } from 'fastify'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2Stream, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2'
import { createHash, randomBytes } from 'node:crypto'
import { extendedConnectHeaders } from './headers.js'
import type { ClientSide } from './client-side.js'
import type { RequestHeaderRewrite, UpstreamRequestHeaders } from '../types.js'

// RFC 6455 4.2.2: the server proves it read the key by hashing it with this GUID.
const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/**
 * An HTTP/2 extended CONNECT (RFC 8441). The client sent no Sec-WebSocket-Key (the stream
 * itself proves it speaks WebSocket), so the proxy is the WebSocket client of the upstream's
 * HTTP/1.1 handshake: it makes a fresh key and checks the Sec-WebSocket-Accept itself. The
 * client gets `:status 200` with the subprotocol and extensions the upstream chose, which
 * is all RFC 8441 5 lets a 2xx carry for it.
 */
export class Http2Client implements ClientSide {
  readonly protocol = 'websocket'
  readonly acceptStatus = 200
  private readonly key = randomBytes(16).toString('base64')

  constructor (readonly socket: Http2Stream) {}

  upstreamHeaders (request: FastifyRequest, target: URL, rewrite: RequestHeaderRewrite | null): UpstreamRequestHeaders {
    return extendedConnectHeaders(request, target, rewrite, this.key)
  }

  acceptable (res: IncomingMessage): boolean {
    const expected = createHash('sha1').update(this.key + WEBSOCKET_GUID).digest('base64')
    return res.headers['sec-websocket-accept'] === expected
  }

  answerable (res: ServerResponse): boolean {
    const stream = this.socket as ServerHttp2Stream
    return !res.headersSent && !stream.headersSent && !stream.destroyed
  }

  accept (res: IncomingMessage): void {
    this.socket.removeListener('finish', this.closeStream)
    const headers: OutgoingHttpHeaders = { ':status': 200 }
    const { 'sec-websocket-protocol': protocol, 'sec-websocket-extensions': extensions } = res.headers
    if (protocol !== undefined) headers['sec-websocket-protocol'] = protocol
    if (extensions !== undefined) headers['sec-websocket-extensions'] = extensions
    ;(this.socket as ServerHttp2Stream).respond(headers)
  }

  /**
   * The compatibility response finishes only when the stream closes, and the client keeps its
   * side of a WebSocket stream open: once our side has ended, the stream is closed (RST_STREAM
   * NO_ERROR: stop sending, RFC 9113 8.1). Until the tunnel opens, which takes the stream's
   * ends over, its 'finish' can only be an answer's.
   */
  endAfterAnswer (): void {
    this.socket.once('finish', this.closeStream)
  }

  // A turn later, as Node itself does for an answered request it never read: the last DATA
  // frames are written out first, or the reset could overtake them.
  private readonly closeStream = (): void => {
    setImmediate(closeIfOpen, this.socket)
  }
}

function closeIfOpen (stream: Http2Stream): void {
  if (!stream.closed) stream.close()
}
