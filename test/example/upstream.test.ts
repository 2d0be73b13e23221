// The example's demo services on their own (no ingress): what the page and the browser test
// rely on them to do.
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { test, type Test } from 'tap'
import { Agent, request as undiciRequest } from 'undici'
import WebSocket from 'ws'
import { startUpstreams } from '../../example-app/upstreams.js'
import { ExampleLines } from '../helpers/example-lines.js'
import { SseReader } from '../helpers/example-sse.js'
import { within } from '../helpers/bounded.js'

const MB = 1024 * 1024

async function start (t: Test) {
  const log = new ExampleLines()
  const upstreams = await startUpstreams({ host: '127.0.0.1', livePort: 0, filesPort: 0, tickMs: 50, downloadMb: 256, slowMs: 5000 }, log.push)
  // Each test's own client, destroyed before the servers close: idle keep-alive connections
  // left in a shared pool would hold close() until their keep-alive timeout. Its timeouts bound
  // every wait for a head or for the next body chunk (undici's own are 5 minutes).
  const agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 })
  t.teardown(async () => {
    await agent.destroy()
    await upstreams.close()
  })
  const request = (url: string, options: Omit<Parameters<typeof undiciRequest>[1] & object, 'dispatcher'> = {}) =>
    undiciRequest(url, { ...options, dispatcher: agent })
  return { ...upstreams, log, request, agent }
}

test('live: the ticker streams numbered SSE events and continues from Last-Event-ID', async (t) => {
  const { live, log, request } = await start(t)
  const first = await request(`${live.url}/ticker`)
  t.equal(first.statusCode, 200)
  t.match(first.headers['content-type'], /^text\/event-stream/)
  const events = await within(10_000, new SseReader(first.body).waitForEvents(3), '3 ticker events')
  t.same(events.map(e => e.id), ['1', '2', '3'])
  t.match(JSON.parse(events[0].data), { n: 1, symbol: 'STRM', price: Number, sentAt: Number })
  first.body.destroy()
  await log.waitFor(/\[live\] ticker stream closed/)

  const resumed = await request(`${live.url}/ticker`, { headers: { 'last-event-id': '41' } })
  const [next] = await within(10_000, new SseReader(resumed.body).waitForEvents(1), 'an event of the resumed ticker')
  t.equal(next.id, '42', 'an EventSource reconnecting with Last-Event-ID continues the sequence')
  resumed.body.destroy()
  t.ok(log.lines.some(line => line.includes('ticker stream opened (from event 41)')), 'the service logged the resume')
})

test('live: the chat picks its own preferred subprotocol, echoes and broadcasts', async (t) => {
  const { live, log } = await start(t)
  const url = `${live.url.replace('http', 'ws')}/chat`
  const alice = new WebSocket(url, ['echo.v1', 'chat.v2'])
  const bob = new WebSocket(url, ['chat.v2'])
  t.teardown(() => { alice.terminate(); bob.terminate() })
  await within(10_000, Promise.all([once(alice, 'open'), once(bob, 'open')]), 'both chat clients opening')
  t.equal(alice.protocol, 'chat.v2', 'the upstream chose chat.v2 although echo.v1 was offered first')
  await log.waitFor(/subprotocol "chat\.v2" \(offered: echo\.v1, chat\.v2\)/)

  const broadcast = once(bob, 'message')
  const echo = once(alice, 'message')
  alice.send('hi')
  t.match(JSON.parse(String((await within(10_000, echo, 'the echo to alice'))[0])), { type: 'echo', text: 'hi', protocol: 'chat.v2' })
  t.match(JSON.parse(String((await within(10_000, broadcast, 'the broadcast to bob'))[0])), { type: 'chat', text: 'hi' })

  const plain = new WebSocket(url, ['echo.v1'])
  t.teardown(() => plain.terminate())
  await within(10_000, once(plain, 'open'), 'the echo.v1 client opening')
  t.equal(plain.protocol, 'echo.v1')
  plain.send('raw bytes')
  t.equal(String((await within(10_000, once(plain, 'message'), 'the echo.v1 echo'))[0]), 'raw bytes', 'echo.v1 echoes the message unchanged')

  const wrongPath = new WebSocket(`${live.url.replace('http', 'ws')}/nope`)
  wrongPath.on('error', () => {}) // terminate() before an open reports an error; the 400 is what counts
  const [, response] = await within(10_000, once(wrongPath, 'unexpected-response'), 'the refusal of /nope') as [unknown, { statusCode: number }]
  t.equal(response.statusCode, 400, 'an upgrade to another path is refused')
  wrongPath.terminate()
})

test('files: the download is chunked, exact and generated on the fly', async (t) => {
  const { files, log, request } = await start(t)
  const response = await request(`${files.url}/download?mb=3`)
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-length'], undefined, 'no Content-Length')
  t.equal(response.headers['transfer-encoding'], 'chunked')
  t.equal(response.headers['x-download-bytes'], String(3 * MB))
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of response.body) {
    bytes += chunk.length
    hash.update(chunk)
  }
  t.equal(bytes, 3 * MB)
  const expected = createHash('sha256')
  for (let i = 0; i < 48; i++) expected.update(Buffer.alloc(64 * 1024, 'fastify-streamline '))
  t.equal(hash.digest('hex'), expected.digest('hex'), 'the bytes are the repeated pattern')
  await log.waitFor(new RegExp(`download of ${3 * MB} bytes sent`))

  const cut = await request(`${files.url}/download`)
  t.equal(cut.headers['x-download-bytes'], String(256 * MB), 'DOWNLOAD_MB is the default size')
  cut.body.destroy()
  await log.waitFor(/download cut by the caller after \d+ of 268435456 bytes/)
})

test('files: /slow answers late, and stops at once when its caller leaves', async (t) => {
  const { files, log, request } = await start(t)
  const started = Date.now()
  const quick = await request(`${files.url}/slow?ms=150`)
  t.equal(quick.statusCode, 200)
  const body = await quick.body.json() as { waitedMs: number }
  t.ok(body.waitedMs >= 150 && Date.now() - started >= 150, 'it waited the requested time')

  // Aborted once the service has the request (a fixed delay raced the request's arrival under load).
  const controller = new AbortController()
  const arrived = once(files.app.server, 'request')
  const pending = request(`${files.url}/slow`, { signal: controller.signal })
  pending.catch(() => {})
  await within(5000, arrived, 'the /slow request reaching the service')
  setTimeout(() => controller.abort(), 100)
  const [, after] = await log.waitFor(/\/slow cancelled by the caller after (\d+) ms/)
  t.ok(Number(after) < 2000, `noticed the abort after ${after} ms, long before its 5 s answer`)
  const outcome = await within(5000, pending.then(() => 'answered', (err: Error) => err.name), 'the aborted request settling')
  t.equal(outcome, 'AbortError', 'the aborted request rejects with an AbortError')
})

test('close() ends open SSE streams cleanly and closes WebSockets with 1001', async (t) => {
  const { live, close, request } = await start(t)
  const ticker = await request(`${live.url}/ticker`)
  const sse = new SseReader(ticker.body)
  await within(10_000, sse.waitForEvents(1), 'a ticker event')
  const socket = new WebSocket(`${live.url.replace('http', 'ws')}/chat`, ['chat.v2'])
  await within(10_000, once(socket, 'open'), 'the chat client opening')
  const closed = once(socket, 'close')

  const started = Date.now()
  await within(10_000, close(), 'close() returning')
  t.ok(Date.now() - started < 3000, 'close() did not wait on the open streams')
  const ending = await within(5000, sse.ended.then(() => 'end', () => 'error'), 'the end of the SSE body')
  t.equal(ending, 'end', 'the SSE body ended cleanly (terminating chunk, no error)')
  const [code, reason] = await within(5000, closed, 'the chat client\'s close') as [number, Buffer]
  t.equal(code, 1001)
  t.equal(String(reason), 'server shutting down')
})
