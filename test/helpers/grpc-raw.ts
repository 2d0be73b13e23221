// The ingress for the tests of its own gRPC answers: an h2c ingress in front of a hand-framed gRPC upstream (rawGrpcUpstream) or the TLS harness.
import type { FastifyServerOptions } from 'fastify'
import type { Test } from 'tap'
import type { DeadlineOptions } from '../../plugins/deadline/index.js'
import type { ProxyOptions } from '../../plugins/proxy/index.js'
import http2 from 'node:http2'
import { once } from 'node:events'
import { port, proxyApp } from './proxy-servers.js'
import { selfSignedCertificate } from './tls.js'
import type { DemoMessage, GrpcUpstream } from './grpc.js'

/** Fastify options for an h2c ingress (its types pick the server kind from literal options; the tests only need the routes). */
export const H2C = { http2: true } as unknown as FastifyServerOptions

/** The proxy options that reach the TLS gRPC harness upstream today: HTTP/2 by ALPN, trusting its certificate. */
export function tlsGrpcTarget (up: GrpcUpstream): ProxyOptions {
  return { upstream: up.url, tls: { ca: up.certificate?.cert }, undici: { allowH2: true } }
}

/** An h2c ingress (the deadline first, when given) in front of `options`; its address as host:port for a gRPC client. */
export async function h2cGrpcIngress (t: Test, options: ProxyOptions, deadline?: DeadlineOptions): Promise<{ address: string, url: string, close: () => Promise<undefined> }> {
  const { app, url } = await proxyApp(t, options, { fastify: H2C, deadline })
  return { address: `127.0.0.1:${port(app.server)}`, url, close: async () => { await app.close() } }
}

export interface RawGrpcUpstream {
  url: string
  ca: Buffer
  /** How each call ended, by the `text` of its request: 'cancelled' when the proxy reset it (Node's `aborted`). */
  ends: Map<string, 'cancelled' | 'finished'>
}

/**
 * A TLS HTTP/2 upstream that speaks gRPC's framing by hand. Not a gRPC library's server: that
 * would end each call itself at the `grpc-timeout` the deadline sends on, racing the ingress's
 * own answer, which is what these tests are about. `onCall` gets each call's stream and request.
 */
export async function rawGrpcUpstream (t: Test, onCall: (stream: http2.ServerHttp2Stream, request: DemoMessage) => void): Promise<RawGrpcUpstream> {
  const certificate = selfSignedCertificate(t)
  const server = http2.createSecureServer({ ...certificate })
  const ends = new Map<string, 'cancelled' | 'finished'>()
  server.on('stream', (stream) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.once('end', () => {
      const request = JSON.parse(Buffer.concat(chunks).subarray(5).toString()) as DemoMessage
      stream.once('close', () => ends.set(request.text, stream.aborted ? 'cancelled' : 'finished'))
      onCall(stream, request)
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  return { url: `https://localhost:${port(server)}`, ca: certificate.cert, ends }
}

/** One gRPC message: its 5-byte prefix, then the JSON. */
export function grpcMessage (value: DemoMessage): Buffer {
  const body = Buffer.from(JSON.stringify(value))
  const head = Buffer.alloc(5)
  head.writeUInt32BE(body.length, 1)
  return Buffer.concat([head, body])
}
