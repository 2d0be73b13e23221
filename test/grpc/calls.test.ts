// gRPC calls through the ingress beyond the happy path: error statuses with their trailers,
// trailers-only answers passed as they are, a client's cancel reaching the server, an upstream
// that is down, a pool of two replicas with one stopped, and the deadline's grpc-timeout.
import t from 'tap'
import http2 from 'node:http2'
import { once } from 'node:events'
import { grpcUpstream, unary, grpc, type DemoMessage } from '../helpers/grpc.js'
import { grpcIngress, readStream } from '../helpers/grpc-ingress.js'
import { H2_MODES } from '../helpers/h2.js'
import { ANSWERED, PROMPTLY, within } from '../helpers/bounded.js'

const UPSTREAMS = ['h2c', 'tls'] as const

/** One message of the demo service, framed: not compressed, 4-byte length, JSON. */
function frame (message: DemoMessage): Buffer {
  const json = Buffer.from(JSON.stringify(message))
  const head = Buffer.alloc(5)
  head.writeUInt32BE(json.length, 1)
  return Buffer.concat([head, json])
}

for (const upMode of UPSTREAMS) {
  t.test(`${upMode} upstream: an error status reaches the client with its message and trailer metadata`, async (t) => {
    const up = await grpcUpstream(t, upMode, {
      Unary: (call, callback) => {
        // Headers first, so that the status travels in trailers after them.
        call.sendMetadata(new grpc.Metadata())
        const md = new grpc.Metadata(); md.set('x-why', 'because'); md.set('x-why-bin', Buffer.from([0, 1]))
        callback({ code: grpc.status.FAILED_PRECONDITION, details: 'not now: 100% busy', metadata: md })
      }
    })
    const { client } = await grpcIngress(t, 'h2c', up)
    const r = await within(ANSWERED, unary(client, { text: 'x' }), 'the failed call\'s status')
    t.equal(r.error?.code, grpc.status.FAILED_PRECONDITION, 'grpc-status')
    t.equal(r.error?.details, 'not now: 100% busy', 'grpc-message, percent-encoded on the wire, intact')
    t.same(r.error?.metadata.get('x-why'), ['because'], 'custom trailer metadata')
    t.same(r.error?.metadata.get('x-why-bin'), [Buffer.from([0, 1])], 'binary trailer metadata')
  })

  t.test(`${upMode} upstream: a trailers-only answer passes as it is (one HEADERS frame with END_STREAM and grpc-status)`, async (t) => {
    const seen: string[] = []
    const up = await grpcUpstream(t, upMode, {
      Unary: (call, callback) => { seen.push(call.request.text); callback({ code: grpc.status.NOT_FOUND, details: 'no such thing' }) }
    })
    const { port } = await grpcIngress(t, 'h2c', up)
    const session = http2.connect(`http://127.0.0.1:${port}`)
    session.on('error', () => {})
    t.teardown(() => { session.destroy() })
    const stream = session.request({ ':method': 'POST', ':path': '/demo.Demo/Unary', 'content-type': 'application/grpc', te: 'trailers' })
    stream.on('error', () => {})
    stream.end(frame({ text: 'lookup' }))
    let data = 0
    stream.on('data', (chunk: Buffer) => { data += chunk.length })
    const trailers: http2.IncomingHttpHeaders[] = []
    stream.on('trailers', (h) => trailers.push(h))
    const [headers, flags] = await within(ANSWERED, once(stream, 'response'), 'the response head') as [http2.IncomingHttpHeaders, number]
    await within(PROMPTLY, once(stream, 'close'), 'the stream\'s close')
    t.same(seen, ['lookup'], 'the server got the call')
    t.equal(headers[':status'], 200)
    t.equal(headers['grpc-status'], '5', 'grpc-status in the one headers block')
    t.equal(headers['grpc-message'], 'no%20such%20thing', 'grpc-message beside it, as the server encoded it')
    t.ok((flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0, 'the headers frame ends the stream: trailers-only')
    t.equal(data, 0, 'no body')
    t.same(trailers, [], 'no second headers block')
    t.equal(stream.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'ended cleanly')
  })

  for (const ingressMode of H2_MODES) {
    t.test(`${upMode} upstream, ${ingressMode} ingress: a client's cancel reaches the server as a cancel`, async (t) => {
      let cancelled: () => void = () => {}
      const sawCancel = new Promise<void>(resolve => { cancelled = resolve })
      let sent = 0
      const up = await grpcUpstream(t, upMode, {
        Ticker: (call) => {
          const timer = setInterval(() => { call.write({ text: `tick ${sent++}` }) }, 50)
          call.on('cancelled', () => { clearInterval(timer); t.equal(call.cancelled, true, 'the handler sees `cancelled`'); cancelled() })
        }
      })
      const { client } = await grpcIngress(t, ingressMode, up)
      const stream = client.Ticker({ text: '' })
      const first = new Promise<void>(resolve => stream.once('data', () => resolve()))
      const ended = readStream(stream)
      await within(ANSWERED, first, 'the first message of the stream')
      stream.cancel()
      await within(PROMPTLY, sawCancel, () => `the server handler to see its call cancelled (it sent ${sent} messages so far)`)
      const { error } = await ended
      t.equal(error?.code, grpc.status.CANCELLED, 'the client sees its own cancel')
      const after = sent
      await new Promise(resolve => setTimeout(resolve, 200))
      t.equal(sent, after, 'the server sends nothing more')
    })
  }
}

t.test('an upstream that is down: the client gets an error status, promptly', async (t) => {
  const up = await grpcUpstream(t, 'h2c')
  up.server.forceShutdown()
  const { client } = await grpcIngress(t, 'h2c', up)
  const r = await within(ANSWERED, unary(client, { text: 'x' }), 'a status for a call to a stopped upstream')
  t.equal(r.response, null, 'no response')
  t.not(r.error?.code, undefined, 'an error status')
  t.not(r.error?.code, grpc.status.OK)
  t.comment(`status today: ${String(r.error?.code)} ${String(r.error?.details)}`)
})

for (const upMode of UPSTREAMS) {
  t.test(`${upMode}: a pool of two replicas with one stopped: every call fails over to the other and succeeds`, async (t) => {
    const served: string[] = []
    const handlers = { Unary: (call: grpc.ServerUnaryCall<DemoMessage, DemoMessage>, callback: grpc.sendUnaryData<DemoMessage>) => { served.push(call.request.text); callback(null, { text: `a:${call.request.text}` }) } }
    const a = await grpcUpstream(t, upMode, handlers)
    const b = await grpcUpstream(t, upMode)
    const { client } = await grpcIngress(t, 'h2c', [a, b], { balance: 'round-robin' })
    const warm = await within(ANSWERED, unary(client, { text: 'warm' }), 'a first call')
    t.equal(warm.error, null)
    b.server.forceShutdown()
    const texts = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5']
    for (const text of texts) {
      const r = await within(ANSWERED, unary(client, { text }), `call ${text}`)
      t.equal(r.error, null, `${text}: no error`)
      t.equal(r.response?.text, `a:${text}`, `${text}: answered by the live replica`)
    }
    t.same(served.filter(s => s !== 'warm'), texts, 'the live replica served each call once')
  })
}

t.test('with the deadline plugin, the upstream gets the remaining budget as grpc-timeout', async (t) => {
  const deadlines: number[] = []
  const up = await grpcUpstream(t, 'h2c', {
    // grpc-js turns the grpc-timeout header it received into the call's deadline (Infinity without one).
    Unary: (call, callback) => { deadlines.push(Number(call.getDeadline())); callback(null, { text: 'ok' }) }
  })
  const { client } = await grpcIngress(t, 'h2c', up, {}, { deadline: { timeout: 3000 } })
  const before = Date.now()
  const r = await within(ANSWERED, unary(client, { text: 'x' }), 'the call\'s answer')
  t.equal(r.error, null)
  t.equal(deadlines.length, 1)
  t.ok(Number.isFinite(deadlines[0]), `the server has a deadline (${deadlines[0]}), from grpc-timeout`)
  const ms = deadlines[0] - before
  t.ok(ms > 0 && ms <= 3000 + 50, `within the ingress's 3000 ms budget (${ms} ms from the call)`)
})
