// The proxy with HTTP/2 clients (TLS with HTTP/1.1 fallback, and h2c) in front of an HTTP/1.1
// upstream: a cancel reaches the upstream, a failed body is a visible reset, trailers pass, SSE streams.
import type { FastifyServerOptions } from 'fastify'
import http from 'node:http'
import http2 from 'node:http2'
import { once } from 'node:events'
import { execFile } from 'node:child_process'
import t, { type Test } from 'tap'
import { proxyApp, upstream, type Upstream } from '../helpers/proxy-servers.js'
import { H2_MODES, h2Request, h2ServerOptions, h2Session, h2Until, type H2Mode } from '../helpers/h2.js'
import { ANSWERED, PROMPTLY, within } from '../helpers/bounded.js'

const PROMPT = 1000

async function h2Proxy (t: Test, mode: H2Mode, up: Upstream): Promise<{ session: http2.ClientHttp2Session, port: number }> {
  const { app } = await proxyApp(t, [
    { upstream: up.url },
    { upstream: up.url, prefix: '/optout', config: { deadline: false } }
  ], { deadline: { timeout: 10_000, streamIdleTimeout: 10_000 }, fastify: h2ServerOptions(t, mode) as FastifyServerOptions })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening')
  return { session: await h2Session(t, mode, address.port), port: address.port }
}

/** The next request the upstream gets (listener attached before the request is sent); bounded. */
async function nextUpstreamRequest (up: Upstream): Promise<[http.IncomingMessage, http.ServerResponse]> {
  return await within(PROMPTLY, once(up.server, 'request'), 'the upstream got the request') as [http.IncomingMessage, http.ServerResponse]
}

async function upstreamCut (t: Test, res: http.ServerResponse, what: string): Promise<void> {
  const start = Date.now()
  if (!res.closed) await Promise.race([once(res, 'close'), new Promise(resolve => setTimeout(resolve, 5000).unref())])
  const took = Date.now() - start
  t.ok(res.closed && !res.writableFinished, `${what}: the upstream request was aborted, not finished`)
  t.ok(took < PROMPT, `${what}: upstream closed ${took} ms after the client's RST_STREAM`)
}

function sse (req: http.IncomingMessage, res: http.ServerResponse): void {
  if (req.url?.endsWith('/silent') === true) return
  if (req.url?.endsWith('/trailers') === true) {
    res.writeHead(200, { 'content-type': 'application/grpc-web', trailer: 'grpc-status' })
    res.write('message')
    res.addTrailers({ 'grpc-status': '0' })
    res.end()
    return
  }
  res.writeHead(200, { 'content-type': req.url?.endsWith('/download') === true ? 'application/octet-stream' : 'text/event-stream' })
  res.write(req.url?.endsWith('/download') === true ? 'part one' : 'data: one\n\n')
  if (req.url?.endsWith('/ticker') === true) {
    let i = 2
    const timer = setInterval(() => { res.write(`data: ${i++}\n\n`); if (i > 4) { clearInterval(timer); res.end() } }, 200)
    res.on('close', () => clearInterval(timer))
  }
}

for (const mode of H2_MODES) {
  t.test(`${mode}: a client's RST_STREAM aborts the upstream request, before and after headers, opted out or not`, async (t) => {
    const up = await upstream(t, sse)
    const { session } = await h2Proxy(t, mode, up)
    for (const [path, text] of [['/silent', null], ['/optout/silent', null], ['/stream', 'data: one'], ['/optout/stream', 'data: one']] as const) {
      const arrived = nextUpstreamRequest(up)
      const { stream } = h2Request(session, path)
      const [, res] = await arrived
      if (text !== null) await within(PROMPTLY, h2Until(stream, text), `${path}: the client got ${JSON.stringify(text)}`)
      stream.close(http2.constants.NGHTTP2_CANCEL)
      await upstreamCut(t, res, path)
    }
  })

  t.test(`${mode}: an upstream that dies mid-body gives a reset stream, not a complete one`, async (t) => {
    const up = await upstream(t, sse)
    const { session } = await h2Proxy(t, mode, up)
    const arrived = nextUpstreamRequest(up)
    const download = h2Request(session, '/download')
    const [, res] = await arrived
    await within(PROMPTLY, h2Until(download.stream, 'part one'), 'the client got the first part')
    res.socket?.destroy()
    const received = await within(PROMPTLY, download.done, 'the client\'s stream closed after the upstream died')
    t.equal(received.body, 'part one')
    t.equal(received.ending, 'reset', 'the client sees a reset')
    t.equal(received.rstCode, http2.constants.NGHTTP2_INTERNAL_ERROR, 'with INTERNAL_ERROR')
    const again = await within(ANSWERED, h2Request(session, '/trailers').done, 'the HTTP/2 answer')
    t.equal(again.status, 200, 'the session still serves new streams')
  })

  t.test(`${mode}: an SSE head reaches the client before the first event`, async (t) => {
    const up = await upstream(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.flushHeaders()
      setTimeout(() => res.end('data: late\n\n'), 1500)
    })
    const { session } = await h2Proxy(t, mode, up)
    const start = Date.now()
    const { stream, done } = h2Request(session, '/events')
    await within(PROMPTLY, once(stream, 'response'), 'the response head')
    const headAfter = Date.now() - start
    t.ok(headAfter < 1200, `head after ${headAfter} ms, before the event at 1500 ms`)
    t.equal((await within(PROMPTLY, done, 'the event and the end of the stream')).body, 'data: late\n\n')
  })

  t.test(`${mode}: upstream trailers reach an h2 client`, async (t) => {
    const up = await upstream(t, sse)
    const { session } = await h2Proxy(t, mode, up)
    const received = await within(ANSWERED, h2Request(session, '/trailers').done, 'the HTTP/2 answer')
    t.equal(received.body, 'message')
    t.equal(received.ending, 'end')
    t.equal(received.trailers['grpc-status'], '0', 'grpc-status arrived as a trailer')
    t.equal(up.seen[0].httpVersion, '1.1', 'the upstream was spoken to over HTTP/1.1')
  })

  t.test(`${mode}: curl over HTTP/2 gets the SSE events as they come`, async (t) => {
    const up = await upstream(t, sse)
    const { port } = await h2Proxy(t, mode, up)
    const url = mode === 'tls' ? `https://127.0.0.1:${port}/ticker` : `http://127.0.0.1:${port}/ticker`
    const flags = mode === 'tls' ? ['--http2', '-k'] : ['--http2-prior-knowledge']
    const start = Date.now()
    // curl's own --max-time bounds this wait.
    const out = await new Promise<string>((resolve, reject) => {
      execFile('curl', ['-sS', '-N', '-i', '--max-time', '10', ...flags, url], (err, stdout) => err === null ? resolve(stdout) : reject(err))
    })
    t.match(out, /^HTTP\/2 200/, 'curl spoke HTTP/2')
    t.match(out, /data: one\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n$/, 'every event, in order')
    t.ok(Date.now() - start >= 550, 'the events were paced by the upstream')
    t.equal(up.seen.length, 1)
  })
}
