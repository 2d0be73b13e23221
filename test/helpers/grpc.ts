import * as grpc from '@grpc/grpc-js'
import type { Test } from 'tap'
import { selfSignedCertificate, type Certificate } from './tls.js'

// A real gRPC service for the tests, with @grpc/grpc-js on both ends. Messages are JSON (no
// .proto to load): the ingress sees the same length-prefixed frames either way.

/** What every call of the demo service sends and receives. */
export interface DemoMessage {
  text: string
  /** Server stream: how many messages; each message: its index. */
  n?: number
  /** Server stream: ms between two messages. */
  every?: number
  /** Padding, for large messages. */
  blob?: string
}

const json = {
  serialize: (value: DemoMessage): Buffer => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer): DemoMessage => JSON.parse(bytes.toString()) as DemoMessage
}

function method (name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<DemoMessage, DemoMessage> {
  return {
    path: `/demo.Demo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize
  }
}

/** The demo service: one method of each gRPC shape. */
export const DEMO_SERVICE = {
  Unary: method('Unary', false, false),
  Ticker: method('Ticker', false, true),
  Collect: method('Collect', true, false),
  Echo: method('Echo', true, true)
}

export type DemoHandlers = {
  Unary: grpc.handleUnaryCall<DemoMessage, DemoMessage>
  Ticker: grpc.handleServerStreamingCall<DemoMessage, DemoMessage>
  Collect: grpc.handleClientStreamingCall<DemoMessage, DemoMessage>
  Echo: grpc.handleBidiStreamingCall<DemoMessage, DemoMessage>
}

/** The usual behaviour: Unary echoes (metadata too), Ticker sends n messages, Collect joins, Echo echoes each. */
export const DEMO_HANDLERS: DemoHandlers = {
  Unary: (call, callback) => {
    call.sendMetadata(call.metadata)
    callback(null, { text: `unary:${call.request.text}`, blob: call.request.blob })
  },
  Ticker: (call) => {
    const { n = 3, every = 10 } = call.request
    let i = 0
    const timer = setInterval(() => {
      if (call.cancelled) return clearInterval(timer)
      call.write({ text: `tick ${i}`, n: i })
      if (++i >= n) {
        clearInterval(timer)
        call.end()
      }
    }, every)
    call.on('cancelled', () => clearInterval(timer))
  },
  Collect: (call, callback) => {
    const texts: string[] = []
    call.on('data', (message: DemoMessage) => texts.push(message.text))
    call.on('end', () => callback(null, { text: texts.join(',') }))
  },
  Echo: (call) => {
    call.on('data', (message: DemoMessage) => call.write({ text: `echo:${message.text}` }))
    call.on('end', () => call.end())
  }
}

export interface GrpcUpstream {
  /** http://127.0.0.1:port (h2c) or https://localhost:port (TLS). */
  url: string
  port: number
  server: grpc.Server
  /** The TLS certificate, for the proxy's `tls.ca`. */
  certificate: Certificate | null
}

/** A gRPC server on 127.0.0.1 (cleartext h2c, or TLS for localhost), shut down at teardown. */
export async function grpcUpstream (t: Test, mode: 'h2c' | 'tls', handlers: Partial<DemoHandlers> = {}): Promise<GrpcUpstream> {
  const server = new grpc.Server()
  server.addService(DEMO_SERVICE, { ...DEMO_HANDLERS, ...handlers })
  const certificate = mode === 'tls' ? selfSignedCertificate(t) : null
  const credentials = certificate === null
    ? grpc.ServerCredentials.createInsecure()
    : grpc.ServerCredentials.createSsl(null, [{ private_key: certificate.key, cert_chain: certificate.cert }])
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', credentials, (err, bound) => { if (err !== null) reject(err); else resolve(bound) })
  })
  t.teardown(() => { server.forceShutdown() })
  const url = mode === 'tls' ? `https://localhost:${port}` : `http://127.0.0.1:${port}`
  return { url, port, server, certificate }
}

export type DemoClient = grpc.Client & {
  Unary: (request: DemoMessage, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<DemoMessage>) => grpc.ClientUnaryCall
  Ticker: (request: DemoMessage, metadata?: grpc.Metadata, options?: grpc.CallOptions) => grpc.ClientReadableStream<DemoMessage>
  Collect: (metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<DemoMessage>) => grpc.ClientWritableStream<DemoMessage>
  Echo: (metadata?: grpc.Metadata, options?: grpc.CallOptions) => grpc.ClientDuplexStream<DemoMessage, DemoMessage>
}

const DemoClientConstructor = grpc.makeGenericClientConstructor(DEMO_SERVICE, 'Demo')

/** A client of the demo service at `address` (host:port), cleartext or TLS trusting `ca`; closed at teardown. */
export function demoClient (t: Test, address: string, ca: Buffer | null = null): DemoClient {
  const credentials = ca === null ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(ca)
  const client = new DemoClientConstructor(address, credentials) as unknown as DemoClient
  t.teardown(() => { client.close() })
  return client
}

/** A unary call's outcome: the response, or the status it failed with. */
export async function unary (client: DemoClient, request: DemoMessage, metadata = new grpc.Metadata(), options: grpc.CallOptions = {}):
Promise<{ response: DemoMessage | null, error: grpc.ServiceError | null, metadata: grpc.Metadata | null }> {
  return await new Promise(resolve => {
    let headers: grpc.Metadata | null = null
    const call = client.Unary(request, metadata, options, (error, response) => {
      resolve({ response: response ?? null, error: error ?? null, metadata: headers })
    })
    call.on('metadata', (m: grpc.Metadata) => { headers = m })
  })
}

export { grpc }
