// The drain in gRPC's words: on app.close(), a gRPC stream through the ingress ends with
// UNAVAILABLE after its last whole message (a client retries that elsewhere), its connection
// gets GOAWAY, the upstream call is cancelled, and close() does not wait for drainTimeout.
import t from 'tap'
import http2 from 'node:http2'
import { once } from 'node:events'
import { demoClient, grpcUpstream, grpc, type DemoMessage } from '../helpers/grpc.js'
import { h2cGrpcIngress, tlsGrpcTarget } from '../helpers/grpc-raw.js'
import { subscribe } from '../helpers/channels.js'
import { ANSWERED, PROMPTLY, until, within } from '../helpers/bounded.js'
import type { StreamEndMessage } from '../../lib/diagnostics.js'

const DRAIN_TIMEOUT = 20_000

t.test('close() ends an open server stream with UNAVAILABLE after whole messages, sends GOAWAY, cancels the upstream call', async (t) => {
  const cancels: string[] = []
  const up = await grpcUpstream(t, 'tls', {
    Ticker: (call) => {
      let i = 0
      const timer = setInterval(() => call.write({ text: `tick ${i++}` }), 30)
      call.on('cancelled', () => { clearInterval(timer); cancels.push(call.request.text) })
    }
  })
  const ends = subscribe<StreamEndMessage>(t, 'fastify-streamline:stream:end')
  const ingress = await h2cGrpcIngress(t, { ...tlsGrpcTarget(up), drainTimeout: DRAIN_TIMEOUT })
  // A grpc-js client, and a raw one that sees the GOAWAY and the trailers themselves.
  const client = demoClient(t, ingress.address)
  const texts: string[] = []
  const stream = client.Ticker({ text: 'grpc-js' })
  stream.on('data', (m: DemoMessage) => texts.push(m.text))
  const ended = new Promise<grpc.ServiceError | null>(resolve => {
    stream.on('error', resolve)
    stream.on('end', () => resolve(null))
  })
  const raw = rawTicker(ingress.url)
  await until(PROMPTLY, () => texts.length >= 3 && raw.frames() >= 3, 'both clients got messages before the drain')

  const start = Date.now()
  const closed = ingress.close()
  const error = await within(ANSWERED, ended, 'the grpc-js stream ended')
  t.equal(error?.code, grpc.status.UNAVAILABLE, `UNAVAILABLE (got ${error?.code}: ${error?.details})`)
  t.match(error?.details, /FST_STREAMLINE_PROXY_SHUTTING_DOWN/, 'the stable code is in grpc-message')
  t.same(texts, texts.map((_, i) => `tick ${i}`), `${texts.length} whole messages, in order`)
  const seen = await within(ANSWERED, raw.done, 'the raw stream ended')
  t.ok(seen.goaway, 'the raw client\'s session got GOAWAY')
  t.equal(seen.trailers['grpc-status'], '14', 'the raw client got UNAVAILABLE in trailers')
  t.equal(seen.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'the stream ended, not reset')
  t.equal(seen.leftover, 0, 'the raw body is whole messages')
  await within(ANSWERED, closed, 'close() resolved')
  t.ok(Date.now() - start < DRAIN_TIMEOUT / 2, `close() took ${Date.now() - start} ms, not drainTimeout`)
  await until(PROMPTLY, () => cancels.length === 2, 'the upstream saw both calls cancelled')
  await within(PROMPTLY, ends.waitFor(2), 'stream:end was published for both')
  t.same(ends.messages.map(m => [m.endedBy, m.grpcStatus]), [['drain', 14], ['drain', 14]], 'stream:end: ended by the drain, with the gRPC status')
})

/** A Ticker call over a raw h2c session: how many messages came, then what ended it. */
function rawTicker (url: string): { frames: () => number, done: Promise<{ goaway: boolean, trailers: http2.IncomingHttpHeaders, rstCode: number, leftover: number }> } {
  const session = http2.connect(url)
  session.on('error', () => {})
  let goaway = false
  session.on('goaway', () => { goaway = true })
  const stream = session.request({ ':method': 'POST', ':path': '/demo.Demo/Ticker', 'content-type': 'application/grpc', te: 'trailers' })
  const request = Buffer.from('{"text":"raw"}')
  const head = Buffer.from([0, 0, 0, 0, request.length])
  stream.end(Buffer.concat([head, request]))
  let pending = Buffer.alloc(0)
  let count = 0
  stream.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk])
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      pending = pending.subarray(5 + pending.readUInt32BE(1))
      count++
    }
  })
  let trailers: http2.IncomingHttpHeaders = {}
  stream.on('trailers', (received: http2.IncomingHttpHeaders) => { trailers = received })
  const done = once(stream, 'close').then(() => {
    session.destroy()
    return { goaway, trailers, rstCode: stream.rstCode ?? -1, leftover: pending.length }
  })
  return { frames: () => count, done }
}
