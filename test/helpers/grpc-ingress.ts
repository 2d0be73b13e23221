import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import type { ProxyOptions } from '../../plugins/proxy/index.js'
import { h2ServerOptions, type H2Mode } from './h2.js'
import { demoClient, grpc, type DemoClient, type DemoMessage, type GrpcUpstream } from './grpc.js'
import { ANSWERED, PROMPTLY, until, within } from './bounded.js'
import { proxyApp, port, type ProxyAppOptions } from './proxy-servers.js'
import { selfSignedCertificate } from './tls.js'

// The ingress as a gRPC client sees it: an HTTP/2 Fastify app (h2c, or TLS for localhost) with
// the proxy in front of gRPC upstreams, and a demo client pointed at it.

export interface GrpcIngress {
  app: FastifyInstance
  client: DemoClient
  port: number
}

/** The proxy (`http2: true`, trusting the upstreams' certificates) on an HTTP/2 ingress in `mode`, and a client of it. */
export async function grpcIngress (t: Test, mode: H2Mode, ups: GrpcUpstream | GrpcUpstream[], options: Partial<ProxyOptions> = {}, extra: ProxyAppOptions = {}): Promise<GrpcIngress> {
  const list = Array.isArray(ups) ? ups : [ups]
  const ca = list.flatMap(up => up.certificate === null ? [] : [up.certificate.cert])
  const server = mode === 'tls' ? { http2: true, https: { allowHTTP1: true, ...selfSignedCertificate(t) } } : h2ServerOptions(t, mode)
  const upstream = list.length === 1 ? list[0].url : list.map(up => up.url)
  const { app } = await proxyApp(t, { upstream, http2: true, ...(ca.length > 0 ? { tls: { ca } } : {}), ...options } as ProxyOptions,
    { ...extra, fastify: { ...server, ...extra.fastify } as FastifyServerOptions })
  const listening = port(app.server)
  const https = (server as { https?: { cert: Buffer } }).https
  const client = demoClient(t, `${mode === 'tls' ? 'localhost' : '127.0.0.1'}:${listening}`, https?.cert ?? null)
  return { app, client, port: listening }
}

/** A server stream's messages, each with the ms since `start` it arrived at, and how it ended. */
export async function readStream (stream: grpc.ClientReadableStream<DemoMessage>, start = performance.now()):
Promise<{ messages: Array<{ text: string, at: number }>, error: grpc.ServiceError | null, status: grpc.StatusObject | null }> {
  const messages: Array<{ text: string, at: number }> = []
  let status: grpc.StatusObject | null = null
  stream.on('data', (m: DemoMessage) => messages.push({ text: m.text, at: performance.now() - start }))
  stream.on('status', (s: grpc.StatusObject) => { status = s })
  const error = await within(ANSWERED, new Promise<grpc.ServiceError | null>(resolve => {
    stream.on('end', () => resolve(null))
    stream.on('error', (err: grpc.ServiceError) => resolve(err))
  }), () => `the end of the server stream (${messages.length} messages so far)`)
  // 'status' follows 'end' in grpc-js.
  await until(PROMPTLY, () => status !== null || error !== null, 'the server stream\'s status')
  return { messages, error, status }
}
