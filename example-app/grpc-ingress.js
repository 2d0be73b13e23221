// The ingress's gRPC listener: gRPC clients speak HTTP/2, and the main port serves HTTP/1.1
// unless HTTPS=1, so gRPC gets a port of its own (GRPC_PORT), cleartext HTTP/2 (h2c, prior
// knowledge: what grpc-js, grpc-go and grpcurl -plaintext speak to an `insecure` channel). Same
// deadline settings as the main ingress; the proxy speaks HTTP/2 to the gRPC service (`http2: true`).
import Fastify from 'fastify'
import { deadline, proxy } from 'fastify-streamline'
import { TICKER_PREFIX } from './grpc/service.js'

/** The gRPC ingress for the service at `upstream` (http://host:port), not listening yet. */
export async function buildGrpcIngress (config, upstream) {
  const app = Fastify({ http2: true, logger: { level: config.logLevel }, http2SessionTimeout: config.server.http2SessionTimeout })
  await app.register(deadline, config.deadline)
  const common = { upstream, http2: true, drainTimeout: config.drainTimeoutMs }
  // gRPC paths are /package.Service/Method: a prefix per service, kept as it is upstream.
  // Quote (unary) keeps the plain deadline: no answer within DEADLINE_TIMEOUT_MS is a
  // DEADLINE_EXCEEDED from the ingress. Watch streams for as long as the client wants, so it runs
  // in streaming mode: no `timeout`, a tick at least every streamIdleTimeout, and
  // MAX_STREAM_DURATION_MS when set (the stream then ends with DEADLINE_EXCEEDED after its last tick).
  await app.register(proxy, { ...common, prefix: `${TICKER_PREFIX}/Watch`, rewritePrefix: `${TICKER_PREFIX}/Watch`, config: { deadline: { streaming: true } } })
  await app.register(proxy, { ...common, prefix: TICKER_PREFIX, rewritePrefix: TICKER_PREFIX })
  return app
}
