import t from 'tap'
import http from 'node:http'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import compress from '@fastify/compress'
import { proxyApp, rawRequest, upstream } from '../helpers/proxy-servers.js'
import { ANSWERED, PROMPTLY, receiveWithin, textOf, within } from '../helpers/bounded.js'

// Timing limits are the figures with a wide margin for a loaded 2-core machine.
const PROMPT = 250

t.test('the response head reaches the client before any body byte', async (t) => {
  let release = (): void => {}
  const up = await upstream(t, (req, res) => {
    if (req.url === '/warm') { res.end(); return }
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.flushHeaders()
    release = () => res.end('data: late\n\n')
  })
  const { url } = await proxyApp(t, { upstream: up.url })
  // The first request through a fresh process also pays for loading and compiling code.
  await receiveWithin(`${url}/warm`)
  const start = Date.now()
  const req = http.get(`${url}/events`, { agent: false })
  const [res] = await within(PROMPTLY, once(req, 'response'), 'the response head') as [http.IncomingMessage]
  const headAfter = Date.now() - start
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-type'], 'text/event-stream')
  t.ok(headAfter < PROMPT, `head after ${headAfter} ms while the upstream holds its body (issue: 50 ms)`)
  release()
  const body = await textOf(res, 'the whole body')
  t.equal(body, 'data: late\n\n')
  t.equal(up.seen.length, 2)
})

t.test('SSE events arrive one by one, uncompressed, with @fastify/compress on the app', async (t) => {
  let sendNext: (data: string) => void = () => {}
  let finish = (): void => {}
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' })
    res.flushHeaders()
    sendNext = (data) => res.write(data)
    finish = () => res.end()
  })
  const { url } = await proxyApp(t, { upstream: up.url, prefix: '/sse' }, {
    before: async (app) => { await app.register(compress, { global: true, threshold: 0 }) }
  })
  const req = http.get(`${url}/sse/stream`, { agent: false, headers: { 'accept-encoding': 'gzip, br' } })
  const [res] = await within(PROMPTLY, once(req, 'response'), 'the response head') as [http.IncomingMessage]
  t.equal(res.headers['content-encoding'], undefined, 'not compressed')
  res.setEncoding('utf8')
  for (let i = 0; i < 5; i++) {
    const event = `id: ${i}\ndata: event ${i}\n\n`
    const sentAt = Date.now()
    sendNext(event)
    const [data] = await within(PROMPTLY, once(res, 'data'), 'the next chunk') as [string]
    const latency = Date.now() - sentAt
    t.equal(data, event, `event ${i} arrives whole and alone`)
    t.ok(latency < PROMPT, `event ${i} after ${latency} ms`)
  }
  finish()
  await within(PROMPTLY, once(res, 'end'), 'the end of the response')
  t.equal(up.seen[0].headers['accept-encoding'], 'gzip, br', 'the client\'s accept-encoding reaches the upstream')
})

t.test('a quiet SSE stream is not cut without the deadline plugin; an explicit bodyTimeout cuts it', async (t) => {
  const up = await upstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: first\n\n')
    // Quiet for 1.2 s, then one more event.
    const timer = setTimeout(() => res.end('data: second\n\n'), 1200)
    res.on('close', () => clearTimeout(timer))
  })
  const { url: relaxed } = await proxyApp(t, { upstream: up.url })
  const ok = await receiveWithin(`${relaxed}/s`)
  t.equal(ok.ending, 'end')
  t.equal(ok.body, 'data: first\n\ndata: second\n\n')

  const { url: strict } = await proxyApp(t, { upstream: up.url, bodyTimeout: 300 })
  const cut = await receiveWithin(`${strict}/s`)
  t.equal(cut.status, 200)
  t.equal(cut.body, 'data: first\n\n')
  t.equal(cut.ending, 'cut', 'the client sees a cut stream, not a clean end')
})

t.test('request bodies stream byte-exact and unparsed (200 MB with a length, chunked, any type)', async (t) => {
  let firstData = (_req: http.IncomingMessage): void => {}
  const up = await upstream(t, (req, res) => {
    const hash = createHash('sha256')
    let bytes = 0
    req.once('data', () => firstData(req))
    req.on('data', (chunk: Buffer) => { hash.update(chunk); bytes += chunk.length })
    req.on('end', () => res.end(JSON.stringify({ sha256: hash.digest('hex'), bytes, type: req.headers['content-type'] ?? null })))
  })
  const { url } = await proxyApp(t, { upstream: up.url })

  const size = 200 * 1024 * 1024
  const block = randomBytes(1024 * 1024)
  const expected = createHash('sha256')
  const req = http.request(`${url}/upload`, { method: 'PUT', agent: false, headers: { 'content-type': 'application/octet-stream', 'content-length': size } })
  const response = once(req, 'response') as Promise<[http.IncomingMessage]>
  for (let sent = 0; sent < size; sent += block.length) {
    const piece = Buffer.from(block)
    piece.writeUInt32BE(sent / block.length, 0)
    expected.update(piece)
    if (!req.write(piece)) await within(PROMPTLY, once(req, 'drain'), 'the request stream drained')
  }
  req.end()
  const [res] = await within(ANSWERED, response, 'the answer to the 200 MiB upload')
  const text = await textOf(res, 'the whole body')
  t.same(JSON.parse(text), { sha256: expected.digest('hex'), bytes: size, type: 'application/octet-stream' })

  // Chunked, with a content type the app would normally parse, and a body it could not parse.
  // The first piece must reach the upstream before the client sends the rest: nothing buffers.
  const piece = '{"half": '
  const streaming = http.request(`${url}/json`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } })
  const streamed = once(streaming, 'response') as Promise<[http.IncomingMessage]>
  const upstreamReq = await within(PROMPTLY, new Promise<http.IncomingMessage>((resolve) => {
    firstData = resolve
    streaming.write(piece)
  }), 'the first piece reached the upstream before the rest was sent')
  t.equal(upstreamReq.headers['transfer-encoding'], 'chunked', 'the upstream receives it chunked')
  streaming.end('"rest"}')
  const [streamedRes] = await within(PROMPTLY, streamed, 'the answer to the chunked upload')
  const streamedText = await textOf(streamedRes, 'the whole body')
  const whole = piece + '"rest"}'
  t.same(JSON.parse(streamedText), { sha256: createHash('sha256').update(whole).digest('hex'), bytes: whole.length, type: 'application/json' })
})

t.test('HEAD, 204 and 304 keep their framing on a reused connection', async (t) => {
  const up = await upstream(t, (req, res) => {
    if (req.url === '/head') { res.writeHead(200, { 'content-length': '1234', 'content-type': 'text/plain' }); res.end(); return }
    if (req.url === '/empty') { res.writeHead(204); res.end(); return }
    if (req.url === '/cached') { res.writeHead(304, { etag: '"v1"' }); res.end(); return }
    res.end('after')
  })
  const { url } = await proxyApp(t, { upstream: up.url })
  // One connection for everything: a framing mistake would corrupt the next response.
  const raw = await within(ANSWERED, rawRequest(url,
    'HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n' +
    'GET /empty HTTP/1.1\r\nHost: x\r\n\r\n' +
    'GET /cached HTTP/1.1\r\nHost: x\r\nIf-None-Match: "v1"\r\n\r\n' +
    'GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 'the proxy\'s answer to the raw request')
  const responses = raw.split(/(?=HTTP\/1\.1 )/)
  t.equal(responses.length, 4, 'four responses on one connection')
  t.match(responses[0], /^HTTP\/1\.1 200 OK\r\n/)
  t.match(responses[0], /\r\ncontent-length: 1234\r\n/i, 'HEAD keeps the upstream length')
  t.ok(responses[0].endsWith('\r\n\r\n'), 'HEAD has no body')
  t.match(responses[1], /^HTTP\/1\.1 204 No Content\r\n/)
  t.notMatch(responses[1], /content-length|transfer-encoding/i)
  t.match(responses[2], /^HTTP\/1\.1 304 Not Modified\r\n/)
  t.notMatch(responses[2], /transfer-encoding/i)
  t.ok(responses[2].endsWith('\r\n\r\n'), '304 has no body')
  t.match(responses[3], /\r\n\r\n(5\r\nafter\r\n0\r\n\r\n|after)$/)
  t.same(up.seen.map(r => r.method), ['HEAD', 'GET', 'GET', 'GET'], 'HEAD went upstream as HEAD')
})

t.test('Expect: 100-continue works and the header is not forwarded', async (t) => {
  const up = await upstream(t, (req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (d: string) => { body += d })
    req.on('end', () => res.end(`got ${body}`))
  })
  const { url } = await proxyApp(t, { upstream: up.url })
  const req = http.request(`${url}/c`, { method: 'POST', agent: false, headers: { expect: '100-continue', 'content-length': 5 } })
  req.flushHeaders()
  await within(PROMPTLY, once(req, 'continue'), '100 Continue')
  req.end('hello')
  const [res] = await within(PROMPTLY, once(req, 'response'), 'the response head') as [http.IncomingMessage]
  const text = await textOf(res, 'the whole body')
  t.equal(text, 'got hello')
  t.equal(up.seen[0].headers.expect, undefined)
})

t.test('an HTTP/1.0 client gets a close-delimited streaming body', async (t) => {
  let second = (): void => {}
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.write('one,')
    second = () => res.end('two')
  })
  const { url } = await proxyApp(t, { upstream: up.url })
  const first = rawRequest(url, 'GET /old HTTP/1.0\r\n\r\n', /one,$/)
  const head = await within(PROMPTLY, first, 'the head and first chunk for the HTTP/1.0 client')
  t.match(head, /^HTTP\/1\.1 200 OK\r\n/)
  t.notMatch(head, /transfer-encoding/i, 'no chunked encoding for HTTP/1.0')
  t.notMatch(head, /content-length/i)
  t.ok(head.endsWith('\r\n\r\none,'), 'the first chunk arrived before the upstream finished')
  // A second connection sees the whole body, ended by the close.
  const whole = rawRequest(url, 'GET /old HTTP/1.0\r\n\r\n')
  await new Promise((resolve) => setImmediate(resolve))
  while (up.seen.length < 2) await within(PROMPTLY, once(up.server, 'request'), 'the upstream got a request')
  second()
  t.match(await within(PROMPTLY, whole, 'the whole close-delimited body'), /\r\n\r\none,two$/)
})

t.test('trailers pass when the client sent TE: trailers', async (t) => {
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
    res.write('body')
    res.addTrailers({ 'x-checksum': 'abc123' })
    res.end()
  })
  const { url } = await proxyApp(t, { upstream: up.url })
  const withTe = await receiveWithin(`${url}/t`, { headers: { te: 'trailers' } })
  t.equal(withTe.body, 'body')
  t.same(withTe.trailers, { 'x-checksum': 'abc123' })
  t.equal(up.seen[0].headers.te, 'trailers', 'TE: trailers is forwarded')
  const without = await receiveWithin(`${url}/t`)
  t.equal(without.body, 'body')
  t.same(without.trailers, {})
  t.equal(up.seen[1].headers.te, undefined)
})
