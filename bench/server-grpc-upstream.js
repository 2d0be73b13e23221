// The gRPC server of bench/grpc.js: @grpc/grpc-js, cleartext HTTP/2, the service of lib/grpc-service.js.
import { BENCH_SERVICE, grpc } from './lib/grpc-service.js'
import { serve } from './child.js'

const MESSAGE = Buffer.alloc(64, 'x')
const server = new grpc.Server()
server.addService(BENCH_SERVICE, {
  Unary: (call, callback) => callback(null, call.request),
  Flood: (call) => {
    const pump = () => {
      while (!call.cancelled) {
        if (!call.write(MESSAGE)) return call.once('drain', pump)
      }
    }
    pump()
  },
  Tick: (call) => {
    const timer = setInterval(() => call.write(MESSAGE), 1000)
    call.write(MESSAGE)
    call.on('cancelled', () => clearInterval(timer))
    call.on('close', () => clearInterval(timer))
  }
})

await serve(
  () => new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => err ? reject(err) : resolve(port))),
  async () => { server.forceShutdown() })
