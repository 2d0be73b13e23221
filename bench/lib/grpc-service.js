// The gRPC service of the grpc bench: messages are raw bytes (identity serializers), so that
// neither end spends its time encoding and the figures are the transport's.
import * as grpc from '@grpc/grpc-js'

const bytes = (b) => b
const method = (name, responseStream) => ({
  path: `/bench.Bench/${name}`,
  requestStream: false,
  responseStream,
  requestSerialize: bytes,
  requestDeserialize: bytes,
  responseSerialize: bytes,
  responseDeserialize: bytes
})

/**
 * Unary echoes; Flood streams 64-byte messages as fast as the reader takes them (the server
 * waits for 'drain'); Tick sends one every second (the memory run: open, nearly idle streams).
 */
export const BENCH_SERVICE = { Unary: method('Unary', false), Flood: method('Flood', true), Tick: method('Tick', true) }
export const BenchClient = grpc.makeGenericClientConstructor(BENCH_SERVICE, 'Bench')
export { grpc }
