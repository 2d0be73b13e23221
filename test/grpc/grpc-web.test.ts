// gRPC-Web over HTTP/1.1 (and HTTP/2): the ingress's own answers are gRPC-Web responses (HTTP 200, the
// trailers as the body's trailer frame, flag 0x80), whether before the head or after messages.
import t, { type Test } from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import { once } from 'node:events'
import { request } from 'undici'
import { closedPort, proxyApp, upstream } from '../helpers/proxy-servers.js'
import { PROMPTLY, ANSWERED, within } from '../helpers/bounded.js'
import { H2C } from '../helpers/grpc-raw.js'

interface Frame { flag: number, payload: Buffer }

/** gRPC-Web frames: a flag byte, a 4-byte big-endian length, the payload. */
function frames (t: Test, body: Buffer): Frame[] {
  const out: Frame[] = []
  let i = 0
  while (i < body.length) {
    const length = body.readUInt32BE(i + 1)
    out.push({ flag: body[i], payload: body.subarray(i + 5, i + 5 + length) })
    i += 5 + length
  }
  t.equal(i, body.length, 'the body is whole frames')
  return out
}

function frame (flag: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(5)
  head[0] = flag
  head.writeUInt32BE(payload.length, 1)
  return Buffer.concat([head, payload])
}

/** A trailer frame's fields. */
function trailers (f: Frame | undefined): Record<string, string> {
  const fields: Record<string, string> = {}
  for (const line of f?.payload.toString().split('\r\n') ?? []) {
    const at = line.indexOf(':')
    if (at > 0) fields[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim()
  }
  return fields
}

async function call (url: string, type: string): Promise<{ status: number, type: string, body: Buffer, at: number }> {
  const start = Date.now()
  const res = await request(`${url}/demo.Demo/Ticker`, { method: 'POST', headers: { 'content-type': type, 'x-grpc-web': '1' }, body: frame(0, Buffer.from('{}')) })
  const body = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, type: String(res.headers['content-type']), body, at: Date.now() - start }
}

t.test('before the head: the deadline and an unreachable upstream answer with a trailer frame, binary and text', async (t) => {
  const held: http.ServerResponse[] = []
  const up = await upstream(t, (req, res) => { req.resume(); held.push(res) })
  const { url } = await proxyApp(t, [{ upstream: up.url, prefix: '/demo.Demo' }, { upstream: `http://127.0.0.1:${await closedPort()}`, prefix: '/down' }], { deadline: { timeout: 400 } })
  for (const type of ['application/grpc-web+proto', 'application/grpc-web']) {
    const got = await within(ANSWERED, call(url, type), `${type}: an answer`)
    t.equal(got.status, 200, `${type}: HTTP 200`)
    t.equal(got.type, type, `${type}: the request's gRPC-Web type`)
    const [last, ...rest] = frames(t, got.body).reverse()
    t.equal(rest.length, 0, `${type}: only the trailer frame`)
    t.equal(last?.flag, 0x80, `${type}: a trailer frame`)
    t.equal(trailers(last)['grpc-status'], '4', `${type}: DEADLINE_EXCEEDED`)
    t.match(trailers(last)['grpc-message'], /FST_STREAMLINE_DEADLINE_EXCEEDED/)
    t.ok(got.at >= 350, `${type}: after ${got.at} ms (timeout 400)`)
  }
  const text = await within(ANSWERED, call(url, 'application/grpc-web-text'), 'grpc-web-text: an answer')
  t.equal(text.type, 'application/grpc-web-text')
  const decoded = frames(t, Buffer.from(text.body.toString(), 'base64'))
  t.equal(decoded[0]?.flag, 0x80, 'grpc-web-text: a base64 trailer frame')
  t.equal(trailers(decoded[0])['grpc-status'], '4')
  t.equal(held.length, 3, 'each call reached the upstream')

  const down = await within(ANSWERED, request(`${url}/down/x`, { method: 'POST', headers: { 'content-type': 'application/grpc-web+proto' }, body: frame(0, Buffer.from('{}')) }), 'down: an answer')
  const body = Buffer.from(await down.body.arrayBuffer())
  t.equal(down.statusCode, 200)
  t.equal(trailers(frames(t, body)[0])['grpc-status'], '14', 'an unreachable upstream: UNAVAILABLE')
})

t.test('a gRPC-Web stream past maxStreamDuration: its whole messages, then a trailer frame with DEADLINE_EXCEEDED; the upstream request closed', async (t) => {
  let upstreamClosed!: Promise<unknown>
  const up = await upstream(t, (req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/grpc-web+proto' })
    upstreamClosed = once(res, 'close')
    let i = 0
    // Each message in two writes, 40 of every 50 ms half-way through one: the proxy must end
    // between messages, never inside one.
    const timer = setInterval(() => {
      const message = frame(0, Buffer.from(`{"text":"tick ${i++}"}`))
      res.write(message.subarray(0, 3))
      setTimeout(() => res.write(message.subarray(3)), 40)
    }, 50)
    res.on('close', () => clearInterval(timer))
  })
  const { url } = await proxyApp(t, { upstream: up.url }, { deadline: { timeout: 5000, maxStreamDuration: 800 } })
  const got = await within(ANSWERED, call(url, 'application/grpc-web+proto'), 'the stream ended')
  t.equal(got.status, 200)
  const all = frames(t, got.body)
  const last = all.pop()
  t.ok(all.length >= 5, `${all.length} messages first`)
  t.same(all.map(f => f.payload.toString()), all.map((_, i) => `{"text":"tick ${i}"}`), 'whole messages, in order')
  t.ok(all.every(f => f.flag === 0), 'messages are data frames')
  t.equal(last?.flag, 0x80, 'then a trailer frame')
  t.equal(trailers(last)['grpc-status'], '4', 'DEADLINE_EXCEEDED')
  t.ok(got.at >= 700 && got.at < 4000, `ended after ${got.at} ms (maxStreamDuration 800)`)
  await within(PROMPTLY, upstreamClosed, 'the upstream request was closed')
})

t.test('over HTTP/2 too: the deadline before the head is a gRPC-Web trailer frame in the body', async (t) => {
  const up = await upstream(t, (req) => { req.resume() })
  const { url } = await proxyApp(t, { upstream: up.url }, { fastify: H2C, deadline: { timeout: 400 } })
  const session = http2.connect(url)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  const stream = session.request({ ':method': 'POST', ':path': '/demo.Demo/Unary', 'content-type': 'application/grpc-web+proto' })
  stream.end(frame(0, Buffer.from('{}')))
  const [headers] = await within(ANSWERED, once(stream, 'response'), 'the h2 client got a head') as [http2.IncomingHttpHeaders]
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  t.equal(headers[':status'], 200)
  t.equal(headers['content-type'], 'application/grpc-web+proto')
  const [only, ...rest] = frames(t, Buffer.concat(chunks))
  t.equal(rest.length, 0, 'one frame')
  t.equal(only?.flag, 0x80, 'a trailer frame')
  t.equal(trailers(only)['grpc-status'], '4')
  t.equal(up.seen.length, 1, 'the call reached the upstream')
})
