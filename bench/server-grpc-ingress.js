// The ingress of bench/grpc.js, as example-app/grpc-ingress.js builds it: Fastify over h2c, the
// deadline plugin (streams in streaming mode, as the example's ticker), the proxy with
// `http2: true` to the gRPC server at UPSTREAM.
import Fastify from 'fastify'
import { deadline, proxy } from 'fastify-streamline'
import { serve, fastifyServer } from './child.js'

const app = Fastify({ http2: true, logger: false })
await app.register(deadline, { timeout: 10_000, streamIdleTimeout: 30_000 })
const upstream = process.env.UPSTREAM
await app.register(proxy, { upstream, http2: true, prefix: '/bench.Bench/Unary', rewritePrefix: '/bench.Bench/Unary' })
await app.register(proxy, { upstream, http2: true, prefix: '/bench.Bench', rewritePrefix: '/bench.Bench', config: { deadline: { streaming: true } } })

await serve(...fastifyServer(app))
