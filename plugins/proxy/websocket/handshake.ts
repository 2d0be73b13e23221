import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { ClientSide } from './client-side.js'
import { DeadlineExceededError, releaseDeadline } from '../../deadline/index.js'
import { abortSide } from '../../../lib/abrupt-end.js'
import { tunnelClosed, tunnelOpened, type TunnelClosedMessage, type TunnelOpenedMessage } from '../../../lib/diagnostics.js'
import { NoReplicaError, ShuttingDownError, UpstreamBadResponseError, UpstreamTimeoutError } from '../errors.js'
import { classifyUpstreamError } from '../upstream-errors.js'
import { refusalHeaders } from './headers.js'
import type { TunnelTimings } from './options.js'
import type { ProxyTlsOptions, RequestHeaderRewrite, ResponseHeaderRewrite, UpstreamRequestHeaders } from '../types.js'
import type { UpstreamPool } from '../upstream/pool.js'
import { relayRefusal } from './response.js'
import { writeError } from '../../../lib/error-answer.js'
import { openTunnel, type Tunnel, type TunnelSocket, type TunnelStats } from './tunnel.js'
import { HeldBytes } from './held-bytes.js'
import { HandshakeWatch } from './handshake-watch.js'
import { requestUpgrade } from './upstream-request.js'
import { ReplicaChoice } from './replica-choice.js'

/** What a registration's upgrades share. */
export interface HandshakeSettings {
  timings: TunnelTimings
  tls: ProxyTlsOptions
  rewriteRequestHeaders: RequestHeaderRewrite | null
  rewriteHeaders: ResponseHeaderRewrite | null
  /** The upstream's replicas, when it is a pool: each handshake goes to one (replica-choice.ts). */
  pool: UpstreamPool | null
}

/**
 * One upgrade (HTTP/1.1, or HTTP/2 extended CONNECT: `side` says which) from hijack to
 * tunnel: the handshake goes upstream as a plain HTTP request;
 * the client's early bytes wait; the upstream's answer decides between a tunnel (valid 101),
 * a relayed HTTP response (anything else) and an error (unreachable, bad 101, too slow).
 * `onDone` runs once everything it opened has closed.
 */
export class Handshake {
  private readonly client: TunnelSocket
  // Dropped once the handshake is settled: an idle tunnel should hold as little as possible.
  private held: HeldBytes | null
  private watch: HandshakeWatch | null = null
  private upstreamReq: ClientRequest | null = null
  // Where an HTTP answer (an error, a relayed refusal) goes; dropped once the tunnel opens.
  private answer: ServerResponse | null
  // When the request began, on performance.now()'s clock: the log lines' responseTime.
  private readonly requestStart: number
  private tunnel: Tunnel | null = null
  private settled = false
  /** The origin the handshake went to (with a pool: the replica's address), for the tunnel:closed message. */
  private origin = ''
  /** With a pool: the replica holding the handshake, then its tunnel. */
  private readonly replica: ReplicaChoice | null

  constructor (
    private readonly request: FastifyRequest,
    reply: FastifyReply,
    private readonly settings: HandshakeSettings,
    private readonly side: ClientSide,
    head: Buffer,
    private readonly onDone: () => void
  ) {
    this.client = side.socket
    this.held = new HeldBytes(this.client, head)
    this.answer = reply.raw
    this.requestStart = performance.now() - reply.elapsedTime
    this.replica = settings.pool === null ? null : new ReplicaChoice(settings.pool, request)
    // Whatever answer goes out on reply.raw (ours or the deadline plugin's 504) is the last.
    side.endAfterAnswer(reply.raw)
  }

  start (target: URL): void {
    const { client } = this
    this.held?.listen()
    client.once('end', this.onClientGone)
    client.once('close', this.onClientGone)
    client.on('close', this.onClientClosed)
    client.on('error', this.onClientError)
    this.watch = new HandshakeWatch(() => this.fail(new UpstreamTimeoutError()), reason => this.onDeadline(reason))
    this.watch.start(this.request, this.settings.timings.handshakeTimeout)
    this.send(target, this.side.upstreamHeaders(this.request, target, this.settings.rewriteRequestHeaders))
  }

  /** Sends the handshake to `target`, or with a pool to the replica chosen for this attempt. */
  private send (target: URL, headers: UpstreamRequestHeaders): void {
    const url = this.replica === null ? target : this.replica.aim(target, headers)
    if (url === null) return this.fail(new NoReplicaError())
    this.origin = url.origin
    const upstreamReq = requestUpgrade(url, headers, this.settings.tls)
    this.upstreamReq = upstreamReq
    // Closures rather than fields: they go with the request object once the handshake is over.
    upstreamReq.on('upgrade', (res: IncomingMessage, upstream: Socket, upstreamHead: Buffer) => this.onUpgrade(res, upstream, upstreamHead))
    upstreamReq.on('response', (res: IncomingMessage) => this.onRefusal(res))
    upstreamReq.on('error', (err: Error) => this.onUpstreamError(err, target, headers))
    upstreamReq.end()
  }

  /**
   * Shutdown: a tunnel closes its WebSocket sessions; a handshake still waiting for the
   * upstream is refused (503). An answer already on its way (a relayed refusal) may finish.
   */
  goAway (): void {
    if (this.tunnel !== null) return this.tunnel.goAway()
    if (!this.settled) this.fail(new ShuttingDownError(), false)
  }

  /** Ends everything now (shutdown grace over); a tunnel logs why it ended. */
  cut (): void {
    if (this.tunnel !== null) return this.tunnel.cut('shutdown')
    this.settle()
    this.upstreamReq?.destroy()
    abortSide(this.client)
  }

  private onUpgrade (res: IncomingMessage, upstream: Socket, upstreamHead: Buffer): void {
    const answer = this.answer
    if (this.settled || answer === null) {
      upstream.destroy()
      return
    }
    // Gone an instant ago: its close event is on its way, and it cannot be answered.
    if (this.client.destroyed) {
      upstream.destroy()
      return this.onClientGone()
    }
    if (!this.side.answerable(answer)) {
      upstream.destroy()
      return this.leaveToOtherListener()
    }
    // Go's ReverseProxy rule: the upstream must switch to the protocol that was asked for.
    if (!sameProtocol(res.headers.upgrade, this.side.protocol) || !this.side.acceptable(res)) {
      upstream.destroy()
      return this.fail(new UpstreamBadResponseError())
    }
    this.replica?.answered(101)
    this.settle(true)
    // The request object is done with; an idle tunnel should hold as little as possible.
    this.upstreamReq = null
    // From here the tunnel governs its own lifetime (idle timeout, wsMaxStreamDuration).
    releaseDeadline(this.request)
    this.side.accept(res, answer)
    this.answer = null
    upstream.on('error', this.onUpstreamSocketError)
    const early = { toClient: upstreamHead.length > 0 ? [upstreamHead] : [], toUpstream: this.held?.take() ?? [] }
    this.held = null
    this.tunnel = openTunnel(this.client, upstream, this.settings.timings, early, this.onTunnelEnd)
    if (tunnelOpened.hasSubscribers) {
      const message: TunnelOpenedMessage = { request: this.request, protocol: res.headers['sec-websocket-protocol'] ?? '' }
      tunnelOpened.publish(message)
    }
  }

  private onRefusal (res: IncomingMessage): void {
    const answer = this.answer
    if (this.settled || answer === null) return
    if (!this.side.answerable(answer)) {
      res.destroy()
      return this.leaveToOtherListener()
    }
    // A 101 Node did not take as an upgrade (no Upgrade header) cannot be relayed as HTTP.
    if ((res.statusCode ?? 0) < 200) {
      res.destroy()
      return this.fail(new UpstreamBadResponseError())
    }
    this.replica?.answered(res.statusCode as number)
    this.settle()
    this.held = null
    relayRefusal(res, refusalHeaders(res, this.request, this.settings.rewriteHeaders), answer)
    this.request.log.info({ res: { statusCode: res.statusCode }, responseTime: this.responseTime() }, 'websocket upgrade refused by upstream')
  }

  private onUpstreamError (err: Error, target: URL, headers: UpstreamRequestHeaders): void {
    if (this.settled) return
    if (this.replica?.failover(err) === true) {
      this.request.log.warn({ err, upstream: this.origin }, 'websocket handshake: replica unreachable, trying another')
      return this.send(target, headers)
    }
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
    abortSide(this.client)
    this.request.log.info({ responseTime: this.responseTime() }, 'websocket client left during the handshake')
  }

  /** Without a tunnel the client connection was the last thing open; a tunnel reports its own end. */
  private readonly onClientClosed = (): void => {
    if (this.tunnel === null) this.onDone()
  }

  private readonly onTunnelEnd = (stats: TunnelStats): void => {
    this.replica?.release()
    this.request.log.info({ res: { statusCode: this.side.acceptStatus }, responseTime: this.responseTime(), ...stats }, 'websocket tunnel closed')
    if (tunnelClosed.hasSubscribers) {
      const message: TunnelClosedMessage = { request: this.request, ...stats, upstream: this.origin }
      tunnelClosed.publish(message)
    }
    this.onDone()
  }

  private onDeadline (reason: unknown): void {
    if (this.settled) return
    if (reason instanceof DeadlineExceededError) {
      // The 504 is already on its way (reply.raw 'finish' closes the connection).
      this.replica?.failed()
      this.settle()
      this.held = null
      this.upstreamReq?.destroy()
      this.request.log.warn({ res: { statusCode: reason.statusCode }, responseTime: this.responseTime() }, 'websocket handshake timed out')
      return
    }
    this.onClientGone()
  }

  /** `replicaFault`: the upstream failed the handshake (passive health), rather than the proxy ending it. */
  private fail (err: { statusCode?: number, code: string, message: string }, replicaFault = true): void {
    if (replicaFault) this.replica?.failed()
    const res = this.answer
    if (res !== null && !this.client.destroyed && !this.side.answerable(res)) return this.leaveToOtherListener()
    this.settle()
    this.held = null
    this.upstreamReq?.destroy()
    if (res === null || this.client.destroyed) abortSide(this.client)
    else writeError(res, err)
    this.request.log.warn({ res: { statusCode: err.statusCode }, code: err.code, responseTime: this.responseTime() }, 'websocket upgrade failed')
  }

  /**
   * Another listener of the app answered the client after the proxy took it: the client is
   * its now. The upstream request is dropped; the client is left as that listener made it.
   */
  private leaveToOtherListener (): void {
    this.settle()
    this.held = null
    this.upstreamReq?.destroy()
    this.request.log.info({ responseTime: this.responseTime() }, 'websocket client answered by another listener; upstream dropped')
  }

  /** Milliseconds since the request began, as `reply.elapsedTime` counts them. */
  private responseTime (): number {
    return performance.now() - this.requestStart
  }

  /** The handshake's outcome is decided: its timer, deadline and listeners go, and its replica unless a tunnel now holds it. */
  private settle (tunnelOpens = false): void {
    this.settled = true
    if (!tunnelOpens) this.replica?.release()
    this.watch?.stop()
    this.watch = null
    this.held?.stop()
    this.client.removeListener('end', this.onClientGone)
    this.client.removeListener('close', this.onClientGone)
  }
}

function sameProtocol (answered: string | undefined, asked: string | undefined): boolean {
  return answered !== undefined && asked !== undefined && answered.trim().toLowerCase() === asked.trim().toLowerCase()
}
