// Every gRPC shape through the ingress, with @grpc/grpc-js on both ends: an HTTP/2 ingress (h2c
// and TLS) in front of a gRPC server reached over HTTP/2 (`http2: true`: h2c and TLS). What the
// client received and what the server saw are both checked; a server stream must arrive as it is
// sent, and a bidi call must stream both ways at once.
import t from 'tap'
import { grpcUpstream, unary, grpc, type DemoMessage } from '../helpers/grpc.js'
import { grpcIngress, readStream } from '../helpers/grpc-ingress.js'
import { H2_MODES } from '../helpers/h2.js'
import { ANSWERED, within } from '../helpers/bounded.js'

const UPSTREAMS = ['h2c', 'tls'] as const

for (const upMode of UPSTREAMS) {
  for (const ingressMode of H2_MODES) {
    const name = `${upMode} upstream, ${ingressMode} ingress`

    t.test(`${name}: unary with metadata both ways (-bin too): headers, response, trailers`, async (t) => {
      const seen: grpc.Metadata[] = []
      const up = await grpcUpstream(t, upMode, {
        Unary: (call, callback) => {
          seen.push(call.metadata)
          const headers = new grpc.Metadata(); headers.set('x-head', 'h'); headers.set('x-head-bin', Buffer.from([0, 255, 7]))
          call.sendMetadata(headers)
          const trailers = new grpc.Metadata(); trailers.set('x-tail', 't'); trailers.set('x-tail-bin', Buffer.from([9, 0, 200]))
          callback(null, { text: `unary:${call.request.text}` }, trailers)
        }
      })
      const { client } = await grpcIngress(t, ingressMode, up)
      const md = new grpc.Metadata(); md.set('x-a', '1'); md.set('x-b-bin', Buffer.from([1, 2, 255]))
      let trailers: grpc.Metadata | null = null
      const call = new Promise<{ response: DemoMessage | undefined, error: grpc.ServiceError | null, headers: grpc.Metadata | null }>(resolve => {
        let headers: grpc.Metadata | null = null
        const c = client.Unary({ text: 'hi' }, md, {}, (error, response) => resolve({ response, error, headers }))
        c.on('metadata', (m: grpc.Metadata) => { headers = m })
        c.on('status', (s: grpc.StatusObject) => { trailers = s.metadata })
      })
      const r = await within(ANSWERED, call, 'the unary answer')
      t.equal(r.error, null, 'no error')
      t.equal(r.response?.text, 'unary:hi', 'the response')
      t.same(r.headers?.get('x-head'), ['h'], 'header metadata reached the client')
      t.same(r.headers?.get('x-head-bin'), [Buffer.from([0, 255, 7])], 'binary header metadata intact')
      t.same((trailers as grpc.Metadata | null)?.get('x-tail'), ['t'], 'trailer metadata reached the client')
      t.same((trailers as grpc.Metadata | null)?.get('x-tail-bin'), [Buffer.from([9, 0, 200])], 'binary trailer metadata intact')
      t.equal(seen.length, 1, 'the server saw the call once')
      t.same(seen[0].get('x-a'), ['1'], 'the server saw the client\'s metadata')
      t.same(seen[0].get('x-b-bin'), [Buffer.from([1, 2, 255])], 'and its binary metadata intact')
    })

    t.test(`${name}: a server stream arrives message by message, as sent`, async (t) => {
      const sentAt: number[] = []
      const start = performance.now()
      const up = await grpcUpstream(t, upMode, {
        Ticker: (call) => {
          let i = 0
          const timer = setInterval(() => {
            sentAt.push(performance.now() - start)
            call.write({ text: `tick ${i}` })
            if (++i === 4) { clearInterval(timer); call.end() }
          }, 300)
          call.on('cancelled', () => clearInterval(timer))
        }
      })
      const { client } = await grpcIngress(t, ingressMode, up)
      const { messages, error, status } = await readStream(client.Ticker({ text: '' }), start)
      t.equal(error, null, 'no error')
      t.equal(status?.code, grpc.status.OK, 'status OK')
      t.same(messages.map(m => m.text), ['tick 0', 'tick 1', 'tick 2', 'tick 3'])
      // Each message reached the client long before the next was even sent (300 ms apart): none held back to the end.
      for (let i = 0; i < 3; i++) {
        t.ok(messages[i].at < sentAt[i + 1], `tick ${i} arrived (${Math.round(messages[i].at)} ms) before tick ${i + 1} was sent (${Math.round(sentAt[i + 1])} ms)`)
      }
    })

    t.test(`${name}: a client stream reaches the server whole`, async (t) => {
      const up = await grpcUpstream(t, upMode)
      const { client } = await grpcIngress(t, ingressMode, up)
      const answer = new Promise<{ error: grpc.ServiceError | null, response: DemoMessage | undefined }>(resolve => {
        const call = client.Collect(new grpc.Metadata(), {}, (error, response) => resolve({ error, response }))
        for (const text of ['a', 'b', 'c']) call.write({ text })
        call.end()
      })
      const r = await within(ANSWERED, answer, 'the client stream\'s answer')
      t.equal(r.error, null)
      t.equal(r.response?.text, 'a,b,c', 'the server received every message, in order')
    })

    t.test(`${name}: bidi streams both ways at once (each message sent only after the previous echo came back)`, async (t) => {
      const received: string[] = []
      const up = await grpcUpstream(t, upMode, {
        Echo: (call) => {
          call.on('data', (m: DemoMessage) => { received.push(m.text); call.write({ text: `echo:${m.text}` }) })
          call.on('end', () => call.end())
        }
      })
      const { client } = await grpcIngress(t, ingressMode, up)
      const call = client.Echo()
      const echoes: string[] = []
      const ended = new Promise<grpc.ServiceError | null>(resolve => { call.on('end', () => resolve(null)); call.on('error', resolve) })
      for (let i = 0; i < 5; i++) {
        const echo = new Promise<string>(resolve => call.once('data', (m: DemoMessage) => resolve(m.text)))
        call.write({ text: `m${i}` })
        echoes.push(await within(ANSWERED, echo, () => `the echo of m${i} while the call is open (server received ${JSON.stringify(received)})`))
      }
      call.end()
      t.equal(await within(ANSWERED, ended, 'the end of the bidi call'), null, 'the call ended OK')
      t.same(echoes, ['echo:m0', 'echo:m1', 'echo:m2', 'echo:m3', 'echo:m4'])
      t.same(received, ['m0', 'm1', 'm2', 'm3', 'm4'], 'the server received each message')
    })

    t.test(`${name}: a 4 MB message each way`, async (t) => {
      const sizes: number[] = []
      const up = await grpcUpstream(t, upMode, {
        Unary: (call, callback) => {
          sizes.push(call.request.blob?.length ?? 0)
          callback(null, { text: 'big', blob: (call.request.blob ?? '').toUpperCase() })
        }
      })
      const { client } = await grpcIngress(t, ingressMode, up)
      // Just under grpc-js's default 4 MiB limit once framed as JSON.
      const blob = 'abcdefgh'.repeat(524_000)
      const r = await within(ANSWERED, unary(client, { text: 'big', blob }), 'the 4 MB answer')
      t.equal(r.error, null, 'no error')
      t.equal(sizes[0], blob.length, 'the server received the whole request message')
      t.equal(r.response?.blob?.length, blob.length, 'the client received the whole response message')
      t.ok(r.response?.blob === blob.toUpperCase(), 'byte for byte')
    })
  }
}
