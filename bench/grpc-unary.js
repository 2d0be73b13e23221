// A quick figure, not part of `npm run bench`: unary gRPC calls per second from one @grpc/grpc-js
// channel (16 calls in flight), straight to a gRPC server and through the proxy (h2c ingress,
// `http2: true` to an h2c upstream). Client, proxy and server share this one process, so the
// ratio says more than the absolute numbers. Needs `npm run build`. Usage: node bench/grpc-unary.js [seconds]
import Fastify from 'fastify'
import * as grpc from '@grpc/grpc-js'
import { proxy } from '../dist/index.js'

const SECONDS = Number(process.argv[2] ?? 3)
const IN_FLIGHT = 16
const json = { serialize: (v) => Buffer.from(JSON.stringify(v)), deserialize: (b) => JSON.parse(b.toString()) }
const Unary = { path: '/demo.Demo/Unary', requestStream: false, responseStream: false, requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize }

const server = new grpc.Server()
server.addService({ Unary }, { Unary: (call, callback) => callback(null, { text: call.request.text }) })
const upstreamPort = await new Promise((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => err ? reject(err) : resolve(port)))

const app = Fastify({ http2: true, logger: false })
await app.register(proxy, { upstream: `http://127.0.0.1:${upstreamPort}`, http2: true })
await app.listen({ port: 0, host: '127.0.0.1' })
const ingressPort = app.server.address().port

const Client = grpc.makeGenericClientConstructor({ Unary }, 'Demo')

/** Calls completed in `seconds`, IN_FLIGHT at a time, after a short warm-up. */
async function rate (port, seconds) {
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  const call = () => new Promise((resolve, reject) => client.Unary({ text: 'hi' }, (err) => err ? reject(err) : resolve()))
  const run = async (ms) => {
    const end = performance.now() + ms
    let done = 0
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => { while (performance.now() < end) { await call(); done++ } }))
    return done
  }
  await run(500)
  const done = await run(seconds * 1000)
  client.close()
  return done / seconds
}

const direct = await rate(upstreamPort, SECONDS)
const proxied = await rate(ingressPort, SECONDS)
console.log(`unary calls/s, ${IN_FLIGHT} in flight, ${SECONDS} s each: direct ${Math.round(direct)}, through the proxy ${Math.round(proxied)} (${Math.round(100 * proxied / direct)} %)`)
await app.close()
server.forceShutdown()
