// The proxy's diagnostics channels on real sockets: the upstream's head latency, every way a
// relayed body can end, and the answer a failed upstream call produced.
import http from 'node:http'
import { once } from 'node:events'
import t from 'tap'
import { CHANNELS, type ProxyResponseMessage, type StreamEndMessage, type UpstreamErrorMessage } from '../../index.js'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { subscribe } from '../helpers/channels.js'
import { Stream } from '../helpers/stream-client.js'
import { receiveWithin, within } from '../helpers/bounded.js'

const HEAD_DELAY = 200
const EVENT = 'data: first\n\n'

function upstreamRoutes (req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = req.url ?? '/'
  if (path === '/late') {
    setTimeout(() => res.end('late body'), HEAD_DELAY)
  } else if (path === '/whole') {
    res.end('0123456789')
  } else if (path === '/events') {
    // One complete event, then nothing: a drain can end this stream at once, at a boundary.
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(EVENT)
  } else if (path.startsWith('/quiet')) {
    // 'first' is no complete event: an event stream with only this is cut by a drain.
    res.writeHead(200, { 'content-type': path === '/quiet-events' ? 'text/event-stream' : 'application/octet-stream' })
    res.write('first')
  } else if (path === '/ticker') {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    const timer = setInterval(() => res.write('data: tick\n\n'), 40)
    res.on('close', () => clearInterval(timer))
  } else if (path === '/dies') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.write('partial', () => res.socket?.destroy())
  }
}

t.test('proxy:response gives the status and how long the upstream took to answer', async (t) => {
  const responses = subscribe<ProxyResponseMessage>(t, CHANNELS.proxyResponse)
  const up = await upstream(t, upstreamRoutes)
  const { url } = await proxyApp(t, { upstream: up.url })
  const received = await receiveWithin(`${url}/late`)
  t.equal(received.body, 'late body')
  await within(5000, responses.waitFor(1), 'the proxy:response message')
  const [message] = responses.messages
  t.equal(message.statusCode, 200)
  t.equal(message.request.url, '/late')
  t.ok(message.upstreamHeadersMs >= HEAD_DELAY - 10 && message.upstreamHeadersMs < HEAD_DELAY + 2000, `${message.upstreamHeadersMs} ms to the head (upstream waited ${HEAD_DELAY})`)
})

t.test('stream:end says who ended each relayed body, and how many bytes went through', async (t) => {
  const ends = subscribe<StreamEndMessage>(t, CHANNELS.streamEnd)
  const up = await upstream(t, upstreamRoutes)
  const { url } = await proxyApp(t, [
    { upstream: up.url },
    { upstream: up.url, prefix: '/long', rewritePrefix: '', config: { deadline: { maxStreamDuration: 400 } } }
  ], { deadline: { timeout: 5000, streamIdleTimeout: 400 } })

  t.equal((await receiveWithin(`${url}/whole`)).body, '0123456789')
  t.equal((await receiveWithin(`${url}/quiet-events`)).ending, 'end', 'an idle event stream ends cleanly')
  t.equal((await receiveWithin(`${url}/quiet-download`)).ending, 'cut', 'an idle download is cut')
  const long = await receiveWithin(`${url}/long/ticker`)
  t.equal(long.ending, 'end', 'a flowing event stream ends at its lifetime')
  t.equal((await receiveWithin(`${url}/dies`)).ending, 'cut', 'an upstream that dies mid-body cuts the client')

  const client = http.get(`${url}/quiet-events`, { agent: false })
  client.on('error', () => {})
  const [res] = await within(5000, once(client, 'response'), 'the head of /quiet-events') as [http.IncomingMessage]
  res.on('error', () => {})
  const [first] = await within(5000, once(res, 'data'), 'the first bytes of /quiet-events') as [Buffer]
  t.equal(String(first), 'first', 'the client got the first bytes before it left')
  client.destroy()

  await within(5000, ends.waitFor(6), 'a stream:end message for each of the six bodies')
  t.same(ends.messages.map(m => [m.request.url, m.endedBy]), [
    ['/whole', 'upstream'],
    ['/quiet-events', 'idle'],
    ['/quiet-download', 'idle'],
    ['/long/ticker', 'lifetime'],
    ['/dies', 'upstream'],
    ['/quiet-events', 'client']
  ])
  t.equal(ends.messages[0].bytes, 10, 'the whole body was counted')
  t.equal(ends.messages[1].bytes, 5, 'the bytes relayed before the idle end')
  // durationMs runs from the upstream's head, the lifetime from the request's arrival: the head
  // came at most `headersAt` (as the client saw it) after the arrival, so the body lasted at least the rest.
  const lasted = ends.messages[3].durationMs
  t.ok(lasted >= 400 - long.headersAt - 5 && lasted < 3000, `lifetime stream lasted ${lasted} ms after its head (limit 400 from arrival, head at ${long.headersAt} ms)`)
})

t.test('proxy:upstream-error gives the code and status the client got', async (t) => {
  const errors = subscribe<UpstreamErrorMessage>(t, CHANNELS.upstreamError)
  // Nothing listens on port 9 of 127.0.0.1 (discard): the connection is refused.
  const { url } = await proxyApp(t, { upstream: 'http://127.0.0.1:9' })
  const received = await receiveWithin(`${url}/anything`)
  t.equal(received.status, 502)
  t.equal(JSON.parse(received.body).code, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE')
  await within(5000, errors.waitFor(1), 'the proxy:upstream-error message')
  t.match(errors.messages[0], { code: 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE', statusCode: 502, request: { url: '/anything' } })
  t.ok(errors.messages[0].error instanceof Error, 'with the underlying error')
})

t.test('stream:end says "drain" for streams that app.close() ended at an event boundary or cut', async (t) => {
  const ends = subscribe<StreamEndMessage>(t, CHANNELS.streamEnd)
  const up = await upstream(t, upstreamRoutes)
  const { app, url } = await proxyApp(t, { upstream: up.url, drainTimeout: 300, drainRetry: 250 })
  const events = new Stream(`${url}/events`)
  const quietEvents = new Stream(`${url}/quiet-events`)
  const download = new Stream(`${url}/quiet-download`)
  await within(5000, Promise.all([events.until(body => body === EVENT), quietEvents.until(body => body === 'first'),
    download.until(body => body === 'first')]), 'the first bytes of the three streams')
  await within(5000, app.close(), 'app.close() returning')
  await within(5000, ends.waitFor(3), 'a stream:end message for each of the three streams')
  t.same(ends.messages.map(m => [m.request.url, m.endedBy]).sort(), [
    ['/events', 'drain'], ['/quiet-download', 'drain'], ['/quiet-events', 'drain']
  ], 'the event stream (ended at a boundary), the unfinished event stream and the download (cut) were all ended by the drain')
  t.equal(ends.messages[0].request.url, '/events', 'the event stream ended at once, before the cuts at drainTimeout')
  t.equal(await within(5000, events.done, 'the end of /events at the client'), 'end', 'the event stream ended cleanly')
  t.equal(events.body, `${EVENT}retry: 250\n\n`, 'its client got the complete event, then the retry field')
  t.equal(ends.messages[0].bytes, events.body.length, 'every byte the client got was counted, the retry field too')
  t.equal(await within(5000, quietEvents.done, 'the end of /quiet-events at the client'), 'cut', 'the event stream without a complete event was cut')
  t.equal(quietEvents.body, 'first')
  t.equal(await within(5000, download.done, 'the end of /quiet-download at the client'), 'cut', 'the download was cut')
  t.same(up.seen.map(req => req.url).sort(), ['/events', '/quiet-download', '/quiet-events'], 'the upstream saw each request once')
})
