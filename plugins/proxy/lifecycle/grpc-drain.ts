import { GRPC_STATUS, percentEncode } from '../../../lib/grpc.js'
import type { GrpcBody } from '../upstream/grpc-body.js'

// What `app.close()` does to relayed gRPC streams: each one ends with UNAVAILABLE (the status a
// client retries on another connection) at the next message boundary (upstream/grpc-body.ts).
// One that never reaches a boundary is cut with its connection at `drainTimeout` (connections.ts).

const DRAINED = percentEncode('the ingress is shutting down [FST_STREAMLINE_PROXY_SHUTTING_DOWN]')

/** The relayed gRPC streams of one registration; nothing is tracked for other responses. */
export class GrpcDrain {
  private readonly streams = new Set<GrpcBody>()
  private draining = false

  /** Follows a gRPC stream until it closes; one that starts during the drain ends at once. */
  follow (body: GrpcBody): void {
    if (this.draining) {
      body.drainAtBoundary(GRPC_STATUS.UNAVAILABLE, DRAINED)
      return
    }
    this.streams.add(body)
    body.once('close', () => this.streams.delete(body))
  }

  start (): void {
    this.draining = true
    for (const body of this.streams) body.drainAtBoundary(GRPC_STATUS.UNAVAILABLE, DRAINED)
    this.streams.clear()
  }
}
