// Upstream failures in gRPC's words: a gRPC client through the ingress gets a gRPC status, as
// gRPC maps HTTP (http-grpc-status-mapping.md), never the JSON error other clients get.
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { closedPort, proxyApp, port, upstream } from '../helpers/proxy-servers.js'
import { H2C, h2cGrpcIngress, grpcMessage, rawGrpcUpstream } from '../helpers/grpc-raw.js'
import { demoClient, unary, grpc, type DemoMessage } from '../helpers/grpc.js'
import { subscribe } from '../helpers/channels.js'
import { PROMPTLY, within } from '../helpers/bounded.js'
import type { StreamEndMessage, UpstreamErrorMessage } from '../../lib/diagnostics.js'

t.test('an upstream that refuses the connection: UNAVAILABLE with the stable code, upstream-error carries it; other clients keep their JSON 502', async (t) => {
  const errors = subscribe<UpstreamErrorMessage>(t, 'fastify-streamline:proxy:upstream-error')
  const { app, url } = await proxyApp(t, { upstream: `http://127.0.0.1:${await closedPort()}` }, { fastify: H2C })
  const client = demoClient(t, `127.0.0.1:${port(app.server)}`)
  const result = await within(PROMPTLY, unary(client, { text: 'hi' }), 'the gRPC client got an outcome')
  t.equal(result.error?.code, grpc.status.UNAVAILABLE, `UNAVAILABLE (got ${result.error?.code}: ${result.error?.details})`)
  t.match(result.error?.details, /FST_STREAMLINE_UPSTREAM_UNAVAILABLE/, 'the stable code is in grpc-message')
  await within(PROMPTLY, errors.waitFor(1), 'upstream-error was published')
  t.equal(errors.messages[0].code, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE')
  t.equal(errors.messages[0].grpcStatus, 14, 'upstream-error carries the gRPC status')
  // Not gRPC: the JSON error as before, over the same HTTP/2 listener.
  const plain = await within(PROMPTLY, h2Get(url), 'the plain client got an answer')
  t.equal(plain.status, 502)
  t.match(plain.type, /^application\/json/)
  t.equal(JSON.parse(plain.body).code, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE')
  await within(PROMPTLY, errors.waitFor(2), 'upstream-error was published for the plain request')
  t.equal(errors.messages[1].grpcStatus, undefined, 'no gRPC status for a plain request')
})

t.test('an upstream that answers an HTTP error without grpc-status: the status gRPC maps it to, not the upstream\'s response', async (t) => {
  const up = await upstream(t, (req, res) => {
    req.resume()
    res.writeHead(Number(req.headers['x-status']), { 'content-type': 'text/html' })
    res.end('<h1>error page</h1>')
  })
  const { app } = await proxyApp(t, { upstream: up.url }, { fastify: H2C })
  const client = demoClient(t, `127.0.0.1:${port(app.server)}`)
  const cases: Array<[number, grpc.status]> = [[400, grpc.status.INTERNAL], [401, grpc.status.UNAUTHENTICATED], [403, grpc.status.PERMISSION_DENIED],
    [404, grpc.status.UNIMPLEMENTED], [429, grpc.status.UNAVAILABLE], [502, grpc.status.UNAVAILABLE], [503, grpc.status.UNAVAILABLE],
    [504, grpc.status.UNAVAILABLE], [500, grpc.status.UNKNOWN]]
  for (const [status, expected] of cases) {
    const md = new grpc.Metadata()
    md.set('x-status', String(status))
    const result = await within(PROMPTLY, unary(client, { text: 'hi' }, md), `${status}: the client got an outcome`)
    t.equal(result.error?.code, expected, `HTTP ${status} → ${grpc.status[expected]} (got ${result.error?.code}: ${result.error?.details})`)
    t.match(result.error?.details, new RegExp(`HTTP ${status}`), `${status}: the upstream's status is in grpc-message`)
  }
  // On the wire: HTTP 200, a trailers-only response (one HEADERS frame with END_STREAM), no upstream header.
  const raw = await within(PROMPTLY, rawGrpc(`http://127.0.0.1:${port(app.server)}`, { 'x-status': '503' }), 'the raw client got an answer')
  t.equal(raw.headers[':status'], 200)
  t.equal(raw.headers['content-type'], 'application/grpc')
  t.equal(raw.headers['grpc-status'], '14')
  t.equal(raw.headers['grpc-message'], 'upstream answered HTTP 503 without a gRPC status')
  t.ok(raw.endStream, 'the head ends the stream: trailers-only')
  t.equal(raw.body.length, 0, 'no body')
  t.equal(up.seen.length, cases.length + 1, 'every call reached the upstream once')
})

/** One gRPC-framed POST over h2c with a raw client: the head, whether it ended the stream, the body. */
async function rawGrpc (url: string, extra: Record<string, string>): Promise<{ headers: http.IncomingHttpHeaders & { ':status'?: number }, endStream: boolean, body: Buffer }> {
  const { connect, constants } = await import('node:http2')
  const session = connect(url)
  try {
    const stream = session.request({ ':method': 'POST', ':path': '/demo.Demo/Unary', 'content-type': 'application/grpc', te: 'trailers', ...extra })
    stream.end(Buffer.from([0, 0, 0, 0, 2, 0x7b, 0x7d]))
    const [headers, flags] = await once(stream, 'response') as [http.IncomingHttpHeaders, number]
    const chunks: Buffer[] = []
    for await (const chunk of stream) chunks.push(chunk as Buffer)
    return { headers, endStream: (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0, body: Buffer.concat(chunks) }
  } finally {
    session.close()
  }
}

/** A plain GET over HTTP/2 (h2c). */
async function h2Get (url: string): Promise<{ status: number, type: string, body: string }> {
  const { connect } = await import('node:http2')
  const session = connect(url)
  try {
    const stream = session.request({ ':path': '/x' })
    const [headers] = await once(stream, 'response') as [http.IncomingHttpHeaders & { ':status': number }]
    let body = ''
    stream.setEncoding('utf8')
    for await (const chunk of stream) body += chunk as string
    return { status: headers[':status'], type: String(headers['content-type']), body }
  } finally {
    session.close()
  }
}

t.test('an upstream whose connection drops between two messages of a stream: the messages, then UNAVAILABLE, not a reset', async (t) => {
  const up = await rawGrpcUpstream(t, (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' })
    stream.write(grpcMessage({ text: 'tick 0' }))
    stream.write(grpcMessage({ text: 'tick 1' }), () => { setTimeout(() => stream.session?.destroy(), 50) })
  })
  const ends = subscribe<StreamEndMessage>(t, 'fastify-streamline:stream:end')
  const ingress = await h2cGrpcIngress(t, { upstream: up.url, tls: { ca: up.ca }, undici: { allowH2: true } })
  const client = demoClient(t, ingress.address)
  const texts: string[] = []
  const call = client.Ticker({ text: 'drop' })
  call.on('data', (m: DemoMessage) => texts.push(m.text))
  const error = await within(PROMPTLY, new Promise<grpc.ServiceError | null>(resolve => {
    call.on('error', resolve)
    call.on('end', () => resolve(null))
  }), 'the stream ended')
  t.same(texts, ['tick 0', 'tick 1'], 'the messages sent before the drop arrived')
  t.equal(error?.code, grpc.status.UNAVAILABLE, `UNAVAILABLE (got ${error?.code}: ${error?.details})`)
  t.match(error?.details, /FST_STREAMLINE_UPSTREAM_UNAVAILABLE/, 'the stable code is in grpc-message')
  await within(PROMPTLY, ends.waitFor(1), 'stream:end was published')
  t.equal(ends.messages[0].grpcStatus, 14, 'stream:end carries the gRPC status')
})
