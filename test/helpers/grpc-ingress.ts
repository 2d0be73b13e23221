import type { FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import type { DeadlineOptions } from '../../plugins/deadline/index.js'
import type { ProxyOptions } from '../../plugins/proxy/index.js'
import { port, proxyApp } from './proxy-servers.js'
import type { GrpcUpstream } from './grpc.js'

/** Fastify options for an h2c ingress (its types pick the server kind from literal options; the tests only need the routes). */
export const H2C = { http2: true } as unknown as FastifyServerOptions

/** The proxy options that reach the TLS gRPC harness upstream today: HTTP/2 by ALPN, trusting its certificate. */
export function tlsGrpcTarget (up: GrpcUpstream): ProxyOptions {
  return { upstream: up.url, tls: { ca: up.certificate?.cert }, undici: { allowH2: true } }
}

/** An h2c ingress (the deadline first, when given) in front of `options`; its address as host:port for a gRPC client. */
export async function grpcIngress (t: Test, options: ProxyOptions, deadline?: DeadlineOptions): Promise<{ address: string, url: string, close: () => Promise<undefined> }> {
  const { app, url } = await proxyApp(t, options, { fastify: H2C, deadline })
  return { address: `127.0.0.1:${port(app.server)}`, url, close: async () => { await app.close() } }
}
