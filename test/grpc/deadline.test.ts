// The deadline in gRPC's words: a gRPC client (grpc-js) through the ingress gets DEADLINE_EXCEEDED
// as a gRPC status (never a JSON 504 or a reset), and the upstream call is cancelled.
import t, { type Test } from 'tap'
import { h2cGrpcIngress, grpcMessage, rawGrpcUpstream, type RawGrpcUpstream } from '../helpers/grpc-raw.js'
import { demoClient, unary, grpc, type DemoMessage } from '../helpers/grpc.js'
import { subscribe } from '../helpers/channels.js'
import { PROMPTLY, until, within } from '../helpers/bounded.js'
import type { DeadlineOptions } from '../../plugins/deadline/index.js'
import type { DeadlineExpiredMessage, StreamEndMessage } from '../../lib/diagnostics.js'

/** An h2c ingress with the deadline in front of `up`. */
async function ingress (t: Test, up: RawGrpcUpstream, deadline: DeadlineOptions): Promise<string> {
  return (await h2cGrpcIngress(t, { upstream: up.url, tls: { ca: up.ca }, undici: { allowH2: true } }, deadline)).address
}

t.test('a unary call past the deadline before the response head: DEADLINE_EXCEEDED near the deadline, the upstream call cancelled', async (t) => {
  // Never answers: the deadline must.
  const up = await rawGrpcUpstream(t, () => {})
  const expired = subscribe<DeadlineExpiredMessage>(t, 'fastify-streamline:deadline:expired')
  const client = demoClient(t, await ingress(t, up, { timeout: 400 }))
  const start = Date.now()
  const result = await within(PROMPTLY, unary(client, { text: 'slow' }), 'the client got an outcome')
  const after = Date.now() - start
  t.equal(result.error?.code, grpc.status.DEADLINE_EXCEEDED, `DEADLINE_EXCEEDED (got ${result.error?.code}: ${result.error?.details})`)
  t.match(result.error?.details, /FST_STREAMLINE_DEADLINE_EXCEEDED/, 'the stable code is in grpc-message')
  t.ok(after >= 350 && after < 3000, `answered after ${after} ms (timeout 400)`)
  await until(PROMPTLY, () => up.ends.has('slow'), 'the upstream call ended')
  t.equal(up.ends.get('slow'), 'cancelled', 'the upstream call was cancelled')
  await within(PROMPTLY, expired.waitFor(1), 'deadline:expired was published')
  t.equal(expired.messages[0].outcome, '504')
  t.equal(expired.messages[0].grpcStatus, 4, 'deadline:expired carries the gRPC status')
})

/** A server stream's messages and how it ended. */
async function ticker (stream: grpc.ClientReadableStream<DemoMessage>): Promise<{ texts: string[], error: grpc.ServiceError | null }> {
  const texts: string[] = []
  stream.on('data', (m: DemoMessage) => texts.push(m.text))
  return await new Promise(resolve => {
    stream.on('error', (error: grpc.ServiceError) => resolve({ texts, error }))
    stream.on('end', () => resolve({ texts, error: null }))
  })
}

t.test('server streams past maxStreamDuration and streamIdleTimeout: their messages, then DEADLINE_EXCEEDED in trailers, not a reset; the upstream call cancelled', async (t) => {
  const up = await rawGrpcUpstream(t, (stream, request) => {
    const { n = 1000, every = 50 } = request
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' })
    let i = 0
    // `n` messages, then silence (the idle case), until cancelled.
    const timer = setInterval(() => { if (i < n) stream.write(grpcMessage({ text: `tick ${i++}` })) }, every)
    stream.on('close', () => clearInterval(timer))
  })
  const ends = subscribe<StreamEndMessage>(t, 'fastify-streamline:stream:end')
  const client = demoClient(t, await ingress(t, up, { timeout: 5000, streamIdleTimeout: 400, maxStreamDuration: 1200 }))
  for (const [text, n, phase] of [['lifetime', 1000, 'lifetime'], ['idle', 3, 'idle']] as const) {
    const outcome = await within(PROMPTLY, ticker(client.Ticker({ text, n, every: 50 })), `${text}: the stream ended`)
    t.equal(outcome.error?.code, grpc.status.DEADLINE_EXCEEDED, `${text}: DEADLINE_EXCEEDED (got ${outcome.error?.code}: ${outcome.error?.details})`)
    t.match(outcome.error?.details, /FST_STREAMLINE_DEADLINE_EXCEEDED/, `${text}: the stable code is in grpc-message`)
    t.ok(outcome.texts.length >= (n === 3 ? 3 : 5), `${text}: ${outcome.texts.length} messages arrived first`)
    t.same(outcome.texts, outcome.texts.map((_, i) => `tick ${i}`), `${text}: whole messages, in order`)
    await until(PROMPTLY, () => up.ends.has(text), `${text}: the upstream call ended`)
    t.equal(up.ends.get(text), 'cancelled', `${text}: the upstream call was cancelled`)
    await within(PROMPTLY, ends.waitFor(1), `${text}: stream:end was published`)
    const end = ends.messages.shift() as StreamEndMessage
    t.equal(end.endedBy, phase, `${text}: stream:end says who ended it`)
    t.equal(end.grpcStatus, 4, `${text}: stream:end carries the gRPC status`)
  }
})
