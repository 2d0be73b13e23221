// `sseResume` and `resumeDownloads` with `http2: true`: HTTP/2 upstreams (node:http2 servers, h2c
// and TLS with ALPN) that cut a stream the HTTP/2 ways: a bare RST_STREAM on that stream, the
// whole session destroyed, a GOAWAY, and an END_STREAM before the body's Content-Length.
import t, { type Test } from 'tap'
import http from 'node:http'
import http2 from 'node:http2'
import { createHash } from 'node:crypto'
import { Agent, request } from 'undici'
import type { FastifyServerOptions } from 'fastify'
import type { ProxyOptions } from '../../plugins/proxy/index.js'
import { port, proxyApp } from '../helpers/proxy-servers.js'
import { Stream } from '../helpers/stream-client.js'
import { PROMPTLY, until, within } from '../helpers/bounded.js'
import { selfSignedCertificate } from '../helpers/tls.js'
import { h2Session } from '../helpers/h2.js'
import { h2Upstream, respondEvents, type H2Exchange, type H2Upstream } from '../helpers/h2-upstream.js'

const E1 = 'id: 1\ndata: one\n\n'
const E2 = 'id: 2\ndata: two\n\n'
const E3 = 'id: 3\ndata: three\n\n'
const E4 = 'id: 4\ndata: four\n\n'
const PARTIAL = 'id: 2\ndata: tw'

/**
 * A bare RST_STREAM(INTERNAL_ERROR) on the stream. node:http2's `close(code)` is not one: it ends
 * the stream's writable side first, so the peer sees END_STREAM (a clean end) before the reset.
 */
function reset (exchange: H2Exchange): void {
  exchange.stream.destroy(new Error('the upstream cut this stream'))
}

/** Writes `data` on the upstream's stream; resolves once node:http2 has sent it. */
async function written (exchange: H2Exchange, data: string | Buffer): Promise<void> {
  await within(PROMPTLY, new Promise<void>(resolve => exchange.stream.write(data, () => resolve())), 'the upstream\'s write was sent')
}

/** A stream's 'close' (events.once would reject at the 'error' a reset brings first). */
async function closeOf (stream: http2.Http2Stream): Promise<void> {
  await new Promise<void>(resolve => stream.once('close', () => resolve()))
}

async function arrives (stream: Stream, text: string): Promise<void> {
  await within(PROMPTLY, stream.until(body => body.includes(text)), () => `the client received ${JSON.stringify(text)}; it has ${JSON.stringify(stream.body)}`)
}

async function ended (stream: Stream): Promise<'end' | 'cut'> {
  return await within(PROMPTLY, stream.done, () => `the client's stream ended; it has ${JSON.stringify(stream.body)}`)
}

/** The event ids in `body`, in order. */
function ids (body: string): string[] {
  return [...body.matchAll(/^id: (.*)$/gm)].map(match => match[1])
}

t.test('an RST_STREAM in the middle of an event, h2c and TLS upstreams: no partial event, then the event whole from the resumed stream', async (t) => {
  const certificate = selfSignedCertificate(t)
  for (const mode of ['h2c', 'tls'] as const) {
    const up = await h2Upstream(t, mode === 'tls' ? certificate : undefined)
    const tls = mode === 'tls' ? { tls: { ca: certificate.cert } } : {}
    const { url } = await proxyApp(t, { upstream: up.url, http2: true, sseResume: {}, ...tls })
    const client = new Stream(`${url}/feed`, { headers: { 'last-event-id': 'client-own' } })
    const first = await up.next(`${mode}: the first request`)
    respondEvents(first.stream)
    await written(first, E1)
    await arrives(client, E1)
    await written(first, PARTIAL)
    reset(first)
    const second = await up.next(`${mode}: the resume request after the RST_STREAM`)
    t.equal(client.body, E1, `${mode}: nothing of the partial event reached the client`)
    t.equal(first.headers['last-event-id'], 'client-own', `${mode}: the first request carried the client's own Last-Event-ID`)
    t.equal(second.headers['last-event-id'], '1', `${mode}: the resume request carries the last relayed id`)
    t.same([second.headers[':method'], second.headers[':path']], ['GET', '/feed'], `${mode}: the same method and path`)
    respondEvents(second.stream)
    // Replayed from the given id inclusive: dropped, not repeated.
    second.stream.end(E1 + E2 + E3)
    t.equal(await ended(client), 'end', `${mode}: the client's stream ends cleanly with the resumed one`)
    t.equal(client.body, E1 + E2 + E3, `${mode}: every event once, in order, whole`)
    t.equal(up.seen.length, 2, `${mode}: two upstream requests`)
  }
})

t.test('an HTTP/2 client through an h2c ingress: the same stream, resumed after an RST_STREAM upstream', async (t) => {
  const up = await h2Upstream(t)
  const { app } = await proxyApp(t, { upstream: up.url, http2: true, sseResume: {} }, { fastify: { http2: true } as FastifyServerOptions })
  const session = await h2Session(t, 'h2c', port(app.server))
  const request = session.request({ ':path': '/feed', 'last-event-id': 'client-own' })
  request.on('error', () => {})
  request.setEncoding('latin1')
  let body = ''
  request.on('data', (data: string) => { body += data })
  const closed = closeOf(request)
  const first = await up.next('the first request')
  respondEvents(first.stream)
  await written(first, E1)
  await until(PROMPTLY, () => body === E1, `the h2 client received the first event (has ${JSON.stringify(body)})`)
  await written(first, PARTIAL)
  reset(first)
  const second = await up.next('the resume request')
  t.equal(body, E1, 'nothing of the partial event reached the h2 client')
  t.equal(second.headers['last-event-id'], '1', 'the resume request carries the last relayed id, not the client\'s')
  respondEvents(second.stream)
  second.stream.end(E2 + E3)
  await within(PROMPTLY, closed, () => `the h2 client's stream closed (has ${JSON.stringify(body)})`)
  t.equal(request.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'a clean end, not a reset')
  t.equal(body, E1 + E2 + E3, 'every event once, in order, whole')
})

t.test('END_STREAM in the middle of an event (node:http2\'s close(code)) is a clean end: not resumed, unless resumeOn any-end', async (t) => {
  for (const resumeOn of ['error', 'any-end'] as const) {
    const up = await h2Upstream(t)
    const { url } = await proxyApp(t, { upstream: up.url, http2: true, sseResume: { resumeOn } })
    const client = new Stream(`${url}/feed`)
    const first = await up.next(`${resumeOn}: the first request`)
    respondEvents(first.stream)
    await written(first, E1)
    await arrives(client, E1)
    await written(first, PARTIAL)
    first.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR)
    if (resumeOn === 'error') {
      t.equal(await ended(client), 'end', 'error: the client\'s stream ends cleanly')
      t.equal(client.body, E1, 'error: at the event boundary, the partial event dropped')
      t.equal(up.seen.length, 1, 'error: no resume request')
      continue
    }
    const second = await up.next('any-end: the resume request')
    t.equal(second.headers['last-event-id'], '1', 'any-end: resumed from the last relayed id')
    respondEvents(second.stream)
    await written(second, E2)
    await arrives(client, E2)
    t.equal(client.body, E1 + E2, 'any-end: the partial event comes whole from the resumed stream')
  }
})

/** The replica of `pool` that got a request, once one of them did. */
async function served (pool: H2Upstream[], what: string): Promise<H2Upstream> {
  await until(PROMPTLY, () => pool.some(up => up.seen.length > 0), what)
  return pool.find(up => up.seen.length > 0) as H2Upstream
}

t.test('a pool of two h2c replicas: one crashes mid-stream (its sessions destroyed), the stream goes on from the other without a hole or a repeat', async (t) => {
  const pool = [await h2Upstream(t), await h2Upstream(t)]
  const { url } = await proxyApp(t, { upstream: pool.map(up => up.url), http2: true, sseResume: {}, outlierDetection: false })
  const client = new Stream(`${url}/feed`)
  const crashed = await served(pool, 'the first request reached a replica')
  const other = pool.find(up => up !== crashed) as H2Upstream
  const first = await crashed.next('the first request')
  respondEvents(first.stream)
  await written(first, E1 + E2)
  await arrives(client, E2)
  await written(first, 'id: 3\ndata: thr')
  crashed.crash()
  const second = await other.next('the resume request, at the other replica')
  t.equal(second.headers['last-event-id'], '2', 'the other replica is asked from the last relayed id')
  t.equal(client.body, E1 + E2, 'nothing of the partial event reached the client')
  respondEvents(second.stream)
  second.stream.end(E2 + E3 + E4)
  t.equal(await ended(client), 'end')
  t.same(ids(client.body), ['1', '2', '3', '4'], 'the client\'s ids: no hole, no repeat')
  t.equal(client.body, E1 + E2 + E3 + E4, 'every event whole')
  t.equal(crashed.seen.length, 1, 'the crashed replica saw only the first request')
  t.equal(other.seen.length, 1, 'the other replica saw only the resume request')
})

t.test('a GOAWAY from the upstream mid-stream (a graceful session close): the stream goes on from a new connection', async (t) => {
  const up = await h2Upstream(t)
  const { url } = await proxyApp(t, { upstream: up.url, http2: true, sseResume: {} })
  const client = new Stream(`${url}/feed`)
  const first = await up.next('the first request')
  respondEvents(first.stream)
  await written(first, E1)
  await arrives(client, E1)
  await written(first, PARTIAL)
  const cut = closeOf(first.stream)
  // undici 7 destroys the connection at a GOAWAY, and with it the streams still open on it, though
  // a GOAWAY lets them finish: for the proxy, a cut.
  first.session.close()
  const second = await up.next('the resume request after the GOAWAY')
  await within(PROMPTLY, cut, 'the first stream closed at the upstream')
  t.not(second.session, first.session, 'the resume request came on a new connection')
  t.equal(second.headers['last-event-id'], '1')
  t.equal(client.body, E1, 'nothing of the partial event reached the client')
  respondEvents(second.stream)
  second.stream.end(E2 + E3)
  t.equal(await ended(client), 'end')
  t.equal(client.body, E1 + E2 + E3, 'every event once, in order, whole')
})

// Downloads: not a multiple of any power of two, so that a splice at a wrong offset changes the digest.
const TOTAL = 3 * 1024 * 1024 + 13
const FILE = Buffer.alloc(TOTAL)
for (let i = 0; i < TOTAL; i++) FILE[i] = (i * 31 + (i >> 9)) & 255
const DIGEST = createHash('sha256').update(FILE).digest('hex')
const ETAG = '"v1"'

interface Download { bytes: () => number, done: Promise<{ digest: string, bytes: number, ending: 'end' | 'cut' }> }

/** A GET through the proxy: the bytes so far, then the digest of what came and how it ended. */
function download (url: string): Download {
  let bytes = 0
  const hash = createHash('sha256')
  const done = new Promise<{ digest: string, bytes: number, ending: 'end' | 'cut' }>((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      let ending: 'end' | 'cut' = 'cut'
      res.on('data', (chunk: Buffer) => { hash.update(chunk); bytes += chunk.length })
      res.on('end', () => { ending = 'end' })
      res.on('error', () => {})
      res.on('close', () => resolve({ digest: hash.digest('hex'), bytes, ending }))
    }).on('error', reject)
  })
  return { bytes: () => bytes, done }
}

/**
 * Answers `exchange` for the file from its Range (a 206) or whole (a 200): all of it, or up to
 * `cutAt` and then (`endShort`) END_STREAM with an RST_STREAM(NO_ERROR) right behind, what
 * node:http2's `close()` sends on an open stream; else the stream is left open.
 */
async function serveFile (exchange: H2Exchange, cutAt = TOTAL, endShort = false): Promise<void> {
  const range = exchange.headers.range
  const from = range === undefined ? 0 : Number(/^bytes=(\d+)-$/.exec(String(range))?.[1])
  exchange.stream.respond({
    ':status': from > 0 ? 206 : 200,
    'content-type': 'application/octet-stream',
    etag: ETAG,
    'accept-ranges': 'bytes',
    'content-length': String(TOTAL - from),
    ...(from > 0 ? { 'content-range': `bytes ${from}-${TOTAL - 1}/${TOTAL}` } : {})
  })
  if (cutAt >= TOTAL) exchange.stream.end(FILE.subarray(from))
  else await written(exchange, FILE.subarray(from, cutAt))
  if (endShort) exchange.stream.close()
}

async function downloadSetup (t: Test, extra: Partial<ProxyOptions> = {}): Promise<{ up: H2Upstream, url: string }> {
  const up = await h2Upstream(t)
  const { url } = await proxyApp(t, { upstream: up.url, http2: true, resumeDownloads: true, ...extra })
  return { up, url: `${url}/file` }
}

const CUT = 1_000_000

t.test('a download cut by an RST_STREAM mid-body: every byte, from a range request with If-Match', async (t) => {
  const { up, url } = await downloadSetup(t)
  const client = download(url)
  const first = await up.next('the first request')
  await serveFile(first, CUT)
  // Every byte before the cut at the client: the proxy has them all, so the range starts at CUT.
  await until(PROMPTLY, () => client.bytes() === CUT, `the client received the ${CUT} bytes before the cut (has ${client.bytes()})`)
  reset(first)
  const second = await up.next('the range request')
  t.same([second.headers.range, second.headers['if-match']], [`bytes=${CUT}-`, ETAG], 'the rest, of the same representation')
  await serveFile(second)
  const got = await within(PROMPTLY, client.done, 'the download finished')
  t.same([got.ending, got.bytes], ['end', TOTAL], 'a complete response')
  t.equal(got.digest, DIGEST, 'the right sha256')
  t.equal(up.seen.length, 2)
})

// undici 7 checks a response's Content-Length over HTTP/1.1 only: over h2, END_STREAM short of it
// with the RST_STREAM(NO_ERROR) right behind reaches the proxy as a complete response.
t.test('a download its upstream ends (END_STREAM) short of its Content-Length is resumed, as a FIN mid-body over HTTP/1.1', async (t) => {
  const { up, url } = await downloadSetup(t)
  const client = download(url)
  const first = await up.next('the first request')
  await serveFile(first, CUT, true)
  const second = await up.next('the range request after END_STREAM short of the length')
  t.same([second.headers.range, second.headers['if-match']], [`bytes=${CUT}-`, ETAG], 'the rest, of the same representation')
  await serveFile(second)
  const got = await within(PROMPTLY, client.done, 'the download finished')
  t.same([got.ending, got.bytes], ['end', TOTAL], 'a complete response')
  t.equal(got.digest, DIGEST, 'the right sha256')
})

t.test('a resumed 206 its upstream ends short of its Content-Length is resumed again', async (t) => {
  const { up, url } = await downloadSetup(t)
  const client = download(url)
  const first = await up.next('the first request')
  await serveFile(first, CUT)
  await until(PROMPTLY, () => client.bytes() === CUT, `the client received the ${CUT} bytes before the first cut (has ${client.bytes()})`)
  reset(first)
  const second = await up.next('the first range request')
  await serveFile(second, 2 * CUT, true)
  const third = await up.next('a second range request, after the 206 ended short')
  t.same([third.headers.range, third.headers['if-match']], [`bytes=${2 * CUT}-`, ETAG])
  await serveFile(third)
  const got = await within(PROMPTLY, client.done, 'the download finished')
  t.same([got.ending, got.bytes], ['end', TOTAL], 'a complete response')
  t.equal(got.digest, DIGEST, 'the right sha256')
})

/** Answers `exchange` with a 200 of `size` bytes, ended (END_STREAM, then RST_STREAM(NO_ERROR)) after a third of them. */
async function endShortOfLength (exchange: H2Exchange, size: number): Promise<number> {
  const cutAt = Math.floor(size / 3)
  exchange.stream.respond({ ':status': 200, 'content-type': 'application/octet-stream', 'content-length': String(size) })
  await written(exchange, FILE.subarray(0, cutAt))
  exchange.stream.close()
  return cutAt
}

// Without resumeDownloads: the client must not take the short body for a whole one. An HTTP/1.1
// client on a kept-alive connection would wait for the missing bytes until its own timeout.
for (const [size, kind] of [[TOTAL, 'a streamed body'], [40_000, 'a small body']] as const) {
  t.test(`without resumeDownloads, ${kind} its h2 upstream ends short of its Content-Length is cut for a keep-alive HTTP/1.1 client at once`, async (t) => {
    const up = await h2Upstream(t)
    const { url } = await proxyApp(t, { upstream: up.url, http2: true })
    const agent = new Agent({ bodyTimeout: 60_000 })
    t.teardown(async () => { await agent.destroy() })
    let bytes = 0
    const outcome = request(`${url}/file`, { dispatcher: agent }).then(async (res) => {
      for await (const chunk of res.body) bytes += (chunk as Buffer).length
      return 'a clean end'
    }).catch((err: Error & { code?: string }) => `an error (${err.code ?? err.message})`)
    const cutAt = await endShortOfLength(await up.next('the request'), size)
    const got = await within(PROMPTLY, outcome, () => `the client's response ended or failed (it has ${bytes} of ${size} bytes)`)
    t.match(got, /^an error/, `the client's response fails after ${bytes} of ${size} bytes: ${got}`)
    t.ok(bytes <= cutAt, `nothing past the cut (${bytes} of ${cutAt})`)
  })
}

t.test('without resumeDownloads, a body its h2 upstream ends short of its Content-Length is reset for an HTTP/2 client, not ended as if complete', async (t) => {
  const up = await h2Upstream(t)
  const { app } = await proxyApp(t, { upstream: up.url, http2: true }, { fastify: { http2: true } as FastifyServerOptions })
  const session = await h2Session(t, 'h2c', port(app.server))
  const stream = session.request({ ':path': '/file' })
  stream.on('error', () => {})
  let bytes = 0
  let ended = false
  stream.on('data', (chunk: Buffer) => { bytes += chunk.length })
  stream.on('end', () => { ended = true })
  const closed = closeOf(stream)
  const cutAt = await endShortOfLength(await up.next('the request'), TOTAL)
  await within(PROMPTLY, closed, () => `the client's stream closed (it has ${bytes} bytes)`)
  t.ok(bytes <= cutAt, `nothing past the cut (${bytes} of ${cutAt})`)
  t.notOk(ended, `the client's stream is reset (code ${String(stream.rstCode)}), not ended`)
})
