import t from 'tap'
import { grpcUpstream, demoClient, unary, grpc } from '../helpers/grpc.js'
// The gRPC test harness itself, without the ingress: what the gRPC tests compare against.
t.test('the demo service answers directly, over h2c and TLS: unary with -bin metadata, a server stream', async (t) => {
  for (const mode of ['h2c', 'tls'] as const) {
    const up = await grpcUpstream(t, mode)
    const client = demoClient(t, `${mode === 'tls' ? 'localhost' : '127.0.0.1'}:${up.port}`, up.certificate?.cert ?? null)
    const md = new grpc.Metadata(); md.set('x-a', '1'); md.set('x-b-bin', Buffer.from([1, 2, 3]))
    const r = await unary(client, { text: 'hi' }, md)
    t.equal(r.response?.text, 'unary:hi')
    t.same(r.metadata?.get('x-b-bin'), [Buffer.from([1, 2, 3])])
    const msgs: string[] = []
    await new Promise<void>((resolve) => { const s = client.Ticker({ text: '', n: 3, every: 5 }); s.on('data', (m) => msgs.push(m.text)); s.on('end', () => resolve()); s.on('error', () => resolve()) })
    t.same(msgs, ['tick 0', 'tick 1', 'tick 2'])
  }
})
