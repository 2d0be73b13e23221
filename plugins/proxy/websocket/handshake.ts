import type { FastifyReply, FastifyRequest } from 'fastify'
import http, { type ClientRequest, type ClientRequestArgs, type IncomingMessage } from 'node:http'
import https from 'node:https'
import net, { type Socket } from 'node:net'
import { DeadlineExceededError, releaseDeadline } from '../../deadline/index.js'
import { closeGracefully } from './dispatch.js'
import { UpstreamBadResponseError, UpstreamTimeoutError } from '../errors.js'
import { classifyUpstreamError } from '../upstream-errors.js'
import { handshakeHeaders, refusalHeaders, type RequestHeaderRewrite, type ResponseHeaderRewrite } from './headers.js'
import type { TunnelTimings } from './options.js'
import type { ProxyTlsOptions } from '../types.js'
import { relayRefusal, switchingProtocolsHead, writeError } from './response.js'
import { openTunnel, type Tunnel, type TunnelStats } from './tunnel.js'

// Client bytes held while the upstream decides; past this the client socket is paused and
// TCP pushes back. A client has no reason to send much before it sees the 101.
const MAX_HELD_BYTES = 64 * 1024

/** What a registration's upgrades share. */
export interface HandshakeSettings {
  timings: TunnelTimings
  tls: ProxyTlsOptions
  rewriteRequestHeaders: RequestHeaderRewrite | null
  rewriteHeaders: ResponseHeaderRewrite | null
}

/**
 * One upgrade from hijack to tunnel: the handshake goes upstream as a plain HTTP request;
 * the client's early bytes wait; the upstream's answer decides between a tunnel (valid 101),
 * a relayed HTTP response (anything else) and an error (unreachable, bad 101, too slow).
 */
export class Handshake {
  private readonly client: Socket
  private held: Buffer[] = []
  private heldBytes = 0
  private upstreamReq: ClientRequest | null = null
  private timer: NodeJS.Timeout | null = null
  private deadlineSignal: AbortSignal | null = null
  private tunnel: Tunnel | null = null
  private settled = false

  constructor (
    private readonly request: FastifyRequest,
    private readonly reply: FastifyReply,
    private readonly settings: HandshakeSettings,
    head: Buffer
  ) {
    this.client = request.raw.socket as Socket
    if (head.length > 0) this.hold(head)
  }

  start (target: URL): void {
    const { client, reply } = this
    // Whatever answer goes out on reply.raw (ours or the deadline plugin's 504) is the last.
    reply.raw.shouldKeepAlive = false
    reply.raw.once('finish', () => closeGracefully(client))
    client.on('data', this.onHeldData)
    client.once('end', this.onClientGone)
    client.once('close', this.onClientGone)
    client.on('error', this.onClientError)
    this.watchDeadline()
    const secure = target.protocol === 'https:'
    const upstreamReq = (secure ? https : http).request({
      protocol: target.protocol,
      hostname: target.hostname.replace(/^\[|\]$/g, ''),
      port: target.port !== '' ? Number(target.port) : (secure ? 443 : 80),
      path: target.pathname + target.search,
      method: 'GET',
      headers: handshakeHeaders(this.request, target, this.settings.rewriteRequestHeaders),
      setHost: false,
      // A fresh connection per handshake: an upgraded socket never returns to a pool. Over
      // plain TCP it is half-open, so the upstream's FIN does not end our side towards it
      // (a half-close passes on); TLS keeps https' own connection, certificates verified.
      ...(secure ? { agent: false, ...this.settings.tls } : { createConnection: halfOpenConnection })
    })
    this.upstreamReq = upstreamReq
    upstreamReq.on('upgrade', this.onUpgrade)
    upstreamReq.on('response', this.onRefusal)
    upstreamReq.on('error', this.onUpstreamError)
    upstreamReq.end()
  }

  /** Ends everything now (shutdown); a tunnel logs why it ended. */
  cut (): void {
    if (this.tunnel !== null) return this.tunnel.cut('shutdown')
    this.settle()
    this.upstreamReq?.destroy()
    this.client.destroy()
  }

  private readonly onUpgrade = (res: IncomingMessage, upstream: Socket, upstreamHead: Buffer): void => {
    if (this.settled) {
      upstream.destroy()
      return
    }
    // Go's ReverseProxy rule: the upstream must switch to the protocol that was asked for.
    if (!sameProtocol(res.headers.upgrade, this.request.headers.upgrade)) {
      upstream.destroy()
      return this.fail(new UpstreamBadResponseError())
    }
    this.settle()
    // The request object is done with; an idle tunnel should hold as little as possible.
    this.upstreamReq = null
    // From here the tunnel governs its own lifetime (idle timeout, wsMaxStreamDuration).
    releaseDeadline(this.request)
    const { client } = this
    client.write(switchingProtocolsHead(res))
    if (upstreamHead.length > 0) client.write(upstreamHead)
    for (const chunk of this.held) upstream.write(chunk)
    this.held = []
    upstream.on('error', this.onUpstreamSocketError)
    this.tunnel = openTunnel(client, upstream, this.settings.timings, this.onTunnelEnd)
  }

  private readonly onRefusal = (res: IncomingMessage): void => {
    if (this.settled) return
    // A 101 Node did not take as an upgrade (no Upgrade header) cannot be relayed as HTTP.
    if ((res.statusCode ?? 0) < 200) {
      res.destroy()
      return this.fail(new UpstreamBadResponseError())
    }
    this.settle()
    this.dropHeld()
    relayRefusal(res, refusalHeaders(res, this.request, this.settings.rewriteHeaders), this.reply.raw, this.client)
    this.request.log.info({ res: { statusCode: res.statusCode }, responseTime: this.reply.elapsedTime }, 'websocket upgrade refused by upstream')
  }

  private readonly onUpstreamError = (err: Error): void => {
    if (this.settled) return
    this.request.log.warn({ err }, 'websocket handshake to the upstream failed')
    this.fail(classifyUpstreamError(err))
  }

  private readonly onUpstreamSocketError = (err: Error): void => {
    this.request.log.debug({ err }, 'websocket upstream socket error')
  }

  private readonly onClientError = (err: Error): void => {
    this.request.log.debug({ err }, 'websocket client socket error')
  }

  /** The client left before the 101: nothing to answer, the upstream request is dropped. */
  private readonly onClientGone = (): void => {
    if (this.settled) return
    this.settle()
    this.upstreamReq?.destroy()
    this.client.destroy()
    this.request.log.info({ responseTime: this.reply.elapsedTime }, 'websocket client left during the handshake')
  }

  private readonly onHeldData = (chunk: Buffer): void => this.hold(chunk)

  private hold (chunk: Buffer): void {
    this.held.push(chunk)
    this.heldBytes += chunk.length
    if (this.heldBytes >= MAX_HELD_BYTES) this.client.pause()
  }

  private dropHeld (): void {
    this.held = []
    this.client.removeListener('data', this.onHeldData)
  }

  private readonly onTunnelEnd = (stats: TunnelStats): void => {
    this.request.log.info({ res: { statusCode: 101 }, responseTime: this.reply.elapsedTime, ...stats }, 'websocket tunnel closed')
  }

  /**
   * The handshake is bounded by the request's deadline when it has one: at expiry the
   * deadline plugin writes the 504 on reply.raw itself, then aborts the signal. Without
   * one, wsHandshakeTimeout applies. Either way: one timer.
   */
  private watchDeadline (): void {
    const deadline = this.request.deadline as FastifyRequest['deadline'] | undefined
    if (deadline !== undefined && deadline.expiresAt !== Infinity) {
      this.deadlineSignal = deadline.signal
      this.deadlineSignal.addEventListener('abort', this.onDeadline, { once: true })
    } else if (this.settings.timings.handshakeTimeout > 0) {
      const { handshakeTimeout } = this.settings.timings
      this.timer = setTimeout(() => this.fail(new UpstreamTimeoutError()), handshakeTimeout)
    }
  }

  private readonly onDeadline = (): void => {
    if (this.settled) return
    const reason: unknown = this.deadlineSignal?.reason
    if (reason instanceof DeadlineExceededError) {
      // The 504 is already on its way (reply.raw 'finish' closes the connection).
      this.settle()
      this.dropHeld()
      this.upstreamReq?.destroy()
      this.request.log.warn({ res: { statusCode: reason.statusCode }, responseTime: this.reply.elapsedTime }, 'websocket handshake timed out')
      return
    }
    this.onClientGone()
  }

  private fail (err: { statusCode?: number, code: string, message: string }): void {
    this.settle()
    this.dropHeld()
    this.upstreamReq?.destroy()
    const res = this.reply.raw
    if (res.headersSent || this.client.destroyed) {
      this.client.destroy()
    } else {
      writeError(res, err)
    }
    this.request.log.warn({ res: { statusCode: err.statusCode }, code: err.code, responseTime: this.reply.elapsedTime }, 'websocket upgrade failed')
  }

  /** The handshake's outcome is decided: its timer, deadline and listeners go. */
  private settle (): void {
    this.settled = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.deadlineSignal?.removeEventListener('abort', this.onDeadline)
    this.deadlineSignal = null
    const { client } = this
    client.removeListener('data', this.onHeldData)
    client.removeListener('end', this.onClientGone)
    client.removeListener('close', this.onClientGone)
  }
}

function halfOpenConnection (options: ClientRequestArgs): Socket {
  return net.connect({ host: options.hostname ?? undefined, port: Number(options.port), allowHalfOpen: true })
}

function sameProtocol (answered: string | undefined, asked: string | undefined): boolean {
  return answered !== undefined && asked !== undefined && answered.trim().toLowerCase() === asked.trim().toLowerCase()
}
