import type { FastifyRequest } from 'fastify'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { closeGracefully } from './graceful-close.js'
import { handshakeHeaders } from './headers.js'
import { switchingProtocolsHead } from './response.js'
import type { TunnelSocket } from './tunnel.js'
import type { RequestHeaderRewrite, UpstreamRequestHeaders } from '../types.js'

/**
 * What differs between the two ways a client opens a WebSocket through the proxy: an
 * HTTP/1.1 upgrade (its socket becomes the tunnel, the upstream's 101 goes to it as is) and
 * an HTTP/2 extended CONNECT (RFC 8441: one stream of the session is the tunnel, answered 200).
 */
export interface ClientSide {
  /** The client's end of the tunnel. */
  readonly socket: TunnelSocket
  /** The upgrade token the upstream must switch to. */
  readonly protocol: string | undefined
  /** The status that tells the client its tunnel is open (for the log). */
  readonly acceptStatus: number
  /** The handshake to send upstream. */
  upstreamHeaders: (request: FastifyRequest, target: URL, rewrite: RequestHeaderRewrite | null) => UpstreamRequestHeaders
  /** Whether the upstream's 101 completes the handshake this side started (its key, its protocol). */
  acceptable: (res: IncomingMessage) => boolean
  /**
   * Whether the proxy may still answer on `res`: nobody else did. Another upgrade or `connect`
   * listener of the app may answer the client after the proxy took it (its own timer, say).
   */
  answerable: (res: ServerResponse) => boolean
  /** Tells the client the tunnel is open; `answer` (reply.raw) is not used again. */
  accept: (res: IncomingMessage, answer: ServerResponse) => void
  /** Ends the client's side once an HTTP answer (a refusal, an error, a 504) has gone out on `res`. */
  endAfterAnswer: (res: ServerResponse) => void
}

/** An HTTP/1.1 upgrade: the handshake passes through; the client checks the upstream's answer to its own key. */
export class Http1Client implements ClientSide {
  readonly socket: Socket
  readonly protocol: string | undefined
  readonly acceptStatus = 101

  constructor (request: FastifyRequest) {
    this.socket = request.raw.socket as Socket
    this.protocol = request.headers.upgrade
  }

  upstreamHeaders (request: FastifyRequest, target: URL, rewrite: RequestHeaderRewrite | null): UpstreamRequestHeaders {
    return handshakeHeaders(request, target, rewrite)
  }

  acceptable (): boolean {
    return true
  }

  answerable (res: ServerResponse): boolean {
    return !res.headersSent && !this.socket.destroyed
  }

  accept (res: IncomingMessage, answer: ServerResponse): void {
    this.socket.write(switchingProtocolsHead(res))
    // The 101 went out on the socket itself. The ServerResponse bound to it (by dispatch.ts, or
    // @fastify/websocket) lets go of it, or every idle tunnel would keep one (and its listeners).
    if (answer.socket === this.socket) answer.detachSocket(this.socket)
  }

  /** The connection left the HTTP parser: whatever is answered on it is its last response. */
  endAfterAnswer (res: ServerResponse): void {
    res.shouldKeepAlive = false
    res.once('finish', () => closeGracefully(this.socket))
  }
}
