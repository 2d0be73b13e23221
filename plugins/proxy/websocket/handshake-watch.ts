import type { FastifyRequest } from 'fastify'

/**
 * The time limit of one handshake. It is bounded by the request's deadline when it has one:
 * at expiry the deadline plugin writes the 504 on reply.raw itself, then aborts the signal
 * (`onAbort` gets the reason). Without one, wsHandshakeTimeout applies (`onTimeout`).
 * Either way: one timer.
 */
export class HandshakeWatch {
  private timer: NodeJS.Timeout | null = null
  private signal: AbortSignal | null = null

  constructor (
    private readonly onTimeout: () => void,
    private readonly onAbort: (reason: unknown) => void
  ) {}

  start (request: FastifyRequest, handshakeTimeout: number): void {
    const deadline = request.deadline as FastifyRequest['deadline'] | undefined
    if (deadline !== undefined && deadline.expiresAt !== Infinity) {
      this.signal = deadline.signal
      this.signal.addEventListener('abort', this.onSignal, { once: true })
    } else if (handshakeTimeout > 0) {
      this.timer = setTimeout(this.onTimeout, handshakeTimeout)
    }
  }

  stop (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.signal?.removeEventListener('abort', this.onSignal)
    this.signal = null
  }

  private readonly onSignal = (): void => {
    this.onAbort(this.signal?.reason)
  }
}
