// The `sseHeartbeat` option: comment blocks on quiet proxied event streams, only between events.
// The upstream is a raw socket, so that every piece below leaves in its own TCP write.
import t, { type Test } from 'tap'
import type net from 'node:net'
import http from 'node:http'
import http2 from 'node:http2'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyServerOptions } from 'fastify'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'
import { proxyApp, rawUpstream, receive, type ProxyAppOptions } from '../helpers/proxy-servers.js'
import { Stream } from '../helpers/stream-client.js'
import { h2Request, h2ServerOptions, h2Session, H2_MODES, type H2Mode } from '../helpers/h2.js'
import { PROMPTLY, within } from '../helpers/bounded.js'

const PERIOD = 100
// A silence in which several heartbeats would be due: long enough to show that none came.
const SILENCE = 5 * PERIOD
const HEARTBEAT = ':\n\n'
// `connection: close`: each request gets a fresh upstream connection, which this raw server reads a head on.
const HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n'
const LAST_CHUNK = '0\r\n\r\n'

/** One chunk of a chunked body, written alone (latin1: each char one byte). */
function piece (socket: net.Socket, bytes: string): void {
  socket.write(`${bytes.length.toString(16)}\r\n${bytes}\r\n`, 'latin1')
}

/** A raw upstream that hands each event-stream request's socket (head sent) to the test; requests seen are kept. */
async function eventUpstream (t: Test, head = HEAD): Promise<{ url: string, seen: string[], sockets: AsyncIterator<net.Socket> }> {
  const seen: string[] = []
  const queue: net.Socket[] = []
  let wake = (): void => {}
  const url = await rawUpstream(t, (socket, request) => {
    seen.push(request)
    if (request.startsWith('GET /alive')) {
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok')
      return
    }
    socket.write(head, 'latin1')
    queue.push(socket)
    wake()
  })
  const sockets: AsyncIterator<net.Socket> = {
    async next () {
      while (queue.length === 0) await new Promise<void>(resolve => { wake = resolve })
      return { value: queue.shift() as net.Socket, done: false }
    }
  }
  return { url, seen, sockets }
}

/** The upstream side of the next event-stream request; bounded. */
async function nextSocket (up: { sockets: AsyncIterator<net.Socket> }): Promise<net.Socket> {
  return (await within(PROMPTLY, up.sockets.next(), 'the upstream got the event-stream request')).value
}

/** What a client of either protocol saw, as bytes (latin1), awaited piece by piece (each wait bounded by PROMPTLY). */
interface Client {
  body: () => string
  until: (check: (body: string) => boolean, what: string) => Promise<void>
  done: Promise<string>
}

/** `waiting` within PROMPTLY; the failure names `what` and the tail of what the client has. */
async function bounded (body: () => string, waiting: Promise<void>, what: string): Promise<void> {
  try {
    await within(PROMPTLY, waiting, what)
  } catch (err) {
    throw new Error(`${(err as Error).message}; the client has ${JSON.stringify(body().slice(-200))}`)
  }
}

function h1Client (url: string): Client {
  const stream = new Stream(url)
  const body = (): string => stream.body
  return { body, until: async (check, what) => { await bounded(body, stream.until(check), what) }, done: stream.done }
}

async function h2Client (t: Test, mode: H2Mode, port: number, path: string): Promise<Client> {
  const session = await h2Session(t, mode, port)
  const { stream, done } = h2Request(session, path)
  let body = ''
  stream.on('data', (data: string) => { body += data })
  const ended = done.then(received => received.ending)
  const arrival = async (check: (body: string) => boolean): Promise<void> => {
    while (!check(body)) {
      if (stream.closed) throw new Error(`stream closed before the expected bytes; got ${JSON.stringify(body.slice(-200))}`)
      await Promise.race([once(stream, 'data'), done])
    }
  }
  return { body: () => body, until: async (check, what) => { await bounded(() => body, arrival(check), what) }, done: ended }
}

function count (body: string, text: string): number {
  return body.split(text).length - 1
}

/** The body with the heartbeats taken out, and where each one was (an offset in that body). */
function withoutHeartbeats (body: string): { rest: string, at: number[] } {
  const at: number[] = []
  let rest = ''
  let from = 0
  for (let i = body.indexOf(HEARTBEAT); i !== -1; i = body.indexOf(HEARTBEAT, from)) {
    rest += body.slice(from, i)
    at.push(rest.length)
    from = i + HEARTBEAT.length
  }
  return { rest: rest + body.slice(from), at }
}

/** Events as an EventSource dispatches them (UTF-8 decoded; comments ignored; a CRLF is one terminator). */
function parseEvents (latin1: string): Array<{ id: string, data: string }> {
  const text = Buffer.from(latin1, 'latin1').toString('utf8')
  const events: Array<{ id: string, data: string }> = []
  let id = ''
  let data: string[] = []
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === '') {
      if (data.length > 0) events.push({ id, data: data.join('\n') })
      data = []
      continue
    }
    if (line.startsWith(':')) continue
    const [field, ...value] = line.split(':')
    const joined = value.join(':').replace(/^ /, '')
    if (field === 'data') data.push(joined)
    if (field === 'id') id = joined
  }
  return events
}

// Events cut at awkward places: inside a line, inside a multi-byte UTF-8 character (é = C3 A9,
// ✓ = E2 9C 93), between the two LFs that end an event, after a CR that an LF may still join.
// After each piece the upstream is quiet for a while; only after the pieces marked `boundary`
// may a heartbeat come (and the test waits for one there).
const SCRIPT: Array<{ bytes: string, boundary?: true }> = [
  { bytes: 'data: caf\xC3' },
  { bytes: '\xA9\n' },
  { bytes: '\n', boundary: true },
  { bytes: 'data: 2\r' },
  { bytes: '\n\r' },
  { bytes: '\nid: 3\ndata: \xE2\x9C' },
  { bytes: '\x93\n\n', boundary: true }
]
const SENT = SCRIPT.map(step => step.bytes).join('')
const ALLOWED = SCRIPT.reduce<number[]>((offsets, step, i) => {
  if (step.boundary === true) offsets.push(SCRIPT.slice(0, i + 1).map(s => s.bytes).join('').length)
  return offsets
}, [])

/** Plays SCRIPT on `socket`, with the quiet periods, and ends the body. */
async function play (t: Test, socket: net.Socket, client: Client): Promise<void> {
  await sleep(SILENCE)
  t.equal(client.body(), '', 'nothing before the upstream\'s first byte')
  for (const step of SCRIPT) {
    const beats = count(client.body(), HEARTBEAT)
    piece(socket, step.bytes)
    if (step.boundary === true) await client.until(body => count(body, HEARTBEAT) > beats, `a heartbeat after ${JSON.stringify(step.bytes)}`)
    else await sleep(SILENCE)
  }
  socket.end(LAST_CHUNK)
}

function checkStream (t: Test, body: string): void {
  const { rest, at } = withoutHeartbeats(body)
  t.equal(rest, SENT, 'without the heartbeats, the client got exactly the upstream\'s bytes')
  t.ok(at.length >= 2, `${at.length} heartbeats`)
  t.same(at.filter(offset => !ALLOWED.includes(offset)), [], 'every heartbeat sits between two events')
  t.same(ALLOWED.filter(offset => !at.includes(offset)), [], 'each quiet boundary got its heartbeat')
  t.same(parseEvents(body), [{ id: '', data: 'café' }, { id: '', data: '2' }, { id: '3', data: '✓' }], 'every event arrives intact')
}

async function alive (t: Test, url: string): Promise<void> {
  const after = await within(PROMPTLY, receive(`${url}/alive`), 'an answer to /alive')
  t.equal(after.body, 'ok', 'the process is alive and still proxying')
}

async function heartbeatApp (t: Test, upstream: string, options: Partial<ProxyOptions> = {}, extra: ProxyAppOptions = {}): Promise<{ url: string, port: number }> {
  const { app, url } = await proxyApp(t, { upstream, sseHeartbeat: PERIOD, ...options }, extra)
  return { url, port: (app.server.address() as net.AddressInfo).port }
}

t.test('HTTP/1.1: heartbeats only between events and after the first byte; every event intact', async (t) => {
  const up = await eventUpstream(t)
  const { url } = await heartbeatApp(t, up.url)
  const client = h1Client(`${url}/events`)
  const socket = await nextSocket(up)
  await play(t, socket, client)
  t.equal(await within(PROMPTLY, client.done, 'the client\'s response ended'), 'end')
  checkStream(t, client.body())
  t.match(up.seen[0], /^GET \/events HTTP\/1\.1\r\n/, 'the upstream saw the request')
  await alive(t, url)
})

for (const mode of H2_MODES) {
  t.test(`HTTP/2 (${mode}): heartbeats only between events and after the first byte; every event intact`, async (t) => {
    const up = await eventUpstream(t)
    const { port } = await heartbeatApp(t, up.url, {}, { fastify: h2ServerOptions(t, mode) as FastifyServerOptions })
    const client = await h2Client(t, mode, port, '/events')
    const socket = await nextSocket(up)
    await play(t, socket, client)
    t.equal(await within(PROMPTLY, client.done, 'the client\'s response ended'), 'end')
    checkStream(t, client.body())
    t.match(up.seen[0], /^GET \/events HTTP\/1\.1\r\n/, 'the upstream saw the request')
    const session = await h2Session(t, mode, port)
    const after = await within(PROMPTLY, h2Request(session, '/alive').done, 'an answer to /alive')
    t.equal(after.body, 'ok', 'the process is alive and still proxying')
  })
}

// How often heartbeats come: one per RATE_PERIOD of silence. A heartbeat restarts the quiet
// period it ends, so over QUIET ms the client gets at most QUIET / RATE_PERIOD of them (+1 for
// the relay's quiet clock starting a little before the client reads the event). Sending at every
// sweep (half a period) once the stream is quiet, or without waiting a whole quiet period, gives
// about twice as many; timers late on a loaded machine only make either count smaller.
const RATE_PERIOD = 400
const QUIET = 9 * RATE_PERIOD

t.test('heartbeats come once per period of silence, not more often', async (t) => {
  const up = await eventUpstream(t)
  const { url } = await heartbeatApp(t, up.url, { sseHeartbeat: RATE_PERIOD })
  const client = h1Client(`${url}/events`)
  const socket = await nextSocket(up)
  piece(socket, 'data: 1\n\n')
  await client.until(body => body.includes('data: 1\n\n'), 'the first event')
  const quietFrom = Date.now()
  await sleep(QUIET)
  const beats = count(client.body(), HEARTBEAT)
  const quietFor = Date.now() - quietFrom
  const most = Math.floor(quietFor / RATE_PERIOD) + 1
  t.ok(beats <= most, `${beats} heartbeats in ${quietFor} ms of silence: at most ${most}, one per ${RATE_PERIOD} ms`)
  t.ok(beats >= 3, `${beats} heartbeats in ${quietFor} ms of silence: they keep coming`)
  piece(socket, 'data: 2\n\n')
  socket.end(LAST_CHUNK)
  t.equal(await within(PROMPTLY, client.done, 'the client\'s response ended'), 'end')
  t.equal(withoutHeartbeats(client.body()).rest, 'data: 1\n\ndata: 2\n\n', 'without the heartbeats, the upstream\'s bytes')
  t.match(up.seen[0], /^GET \/events /, 'the upstream saw the request')
})

t.test('no heartbeat in a body with a Content-Encoding', async (t) => {
  // The bytes end where an event would, so only the header can keep the heartbeat out.
  const up = await eventUpstream(t, HEAD.replace('\r\n\r\n', '\r\ncontent-encoding: identity\r\n\r\n'))
  const { url } = await heartbeatApp(t, up.url)
  const client = h1Client(`${url}/events`)
  const socket = await nextSocket(up)
  piece(socket, 'data: 1\n\n')
  await client.until(body => body.includes('data: 1\n\n'), 'the first event')
  await sleep(SILENCE)
  piece(socket, 'data: 2\n\n')
  socket.end(LAST_CHUNK)
  t.equal(await within(PROMPTLY, client.done, 'the client\'s response ended'), 'end')
  t.equal(client.body(), 'data: 1\n\ndata: 2\n\n', 'the body as the upstream sent it')
  t.match(up.seen[0], /^GET \/events /, 'the upstream saw the request')
  await alive(t, url)
})

t.test('a client that is not reading gets no heartbeat', async (t) => {
  const up = await eventUpstream(t)
  const { url } = await heartbeatApp(t, up.url)
  const req = http.get(`${url}/events`, { agent: false })
  const [res] = await within(PROMPTLY, once(req, 'response'), 'the response head') as [http.IncomingMessage]
  res.pause()
  const socket = await nextSocket(up)
  // Whole events until the chain up to the paused client is full: the upstream's socket no
  // longer drains (bounded: 64 MB at most).
  const event = `data: ${'x'.repeat(64 * 1024)}\n\n`
  let events = 0
  for (let full = false; !full && events < 1024;) {
    events++
    if (socket.write(`${event.length.toString(16)}\r\n${event}\r\n`)) continue
    full = await Promise.race([once(socket, 'drain').then(() => false), sleep(2 * SILENCE).then(() => true)])
  }
  t.ok(events < 1024, `the chain filled after ${events} events`)
  // Heartbeats would be due several times over by now.
  await sleep(2 * SILENCE)
  socket.once('drain', () => { piece(socket, 'data: end\n\n'); socket.end(LAST_CHUNK) })
  res.setEncoding('latin1')
  let body = ''
  res.on('data', (data: string) => { body += data })
  res.resume()
  await within(PROMPTLY, once(res, 'end'), 'the end of the response, once the client read')
  t.equal(count(body, HEARTBEAT), 0, 'no heartbeat')
  t.equal(count(body, event), events, 'every event arrived')
  t.ok(body.endsWith('data: end\n\n'), 'and the last one')
  t.match(up.seen[0], /^GET \/events /, 'the upstream saw the request')
  await alive(t, url)
})

t.test('HTTP/2: a client that grants no flow-control window gets no heartbeat', async (t) => {
  // Over h2 a client that is not reading is one that grants no window: the proxy's writes wait
  // in the stream, and one event bigger than its buffer leaves the response waiting for 'drain'
  // with nothing of the upstream's left in the relay, at an event boundary: only the client's
  // state can hold the heartbeat back.
  const up = await eventUpstream(t)
  const { port } = await heartbeatApp(t, up.url, {}, { fastify: h2ServerOptions(t, 'h2c') as FastifyServerOptions })
  const session = http2.connect(`http://127.0.0.1:${port}`, { settings: { initialWindowSize: 0 } })
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  await within(PROMPTLY, once(session, 'remoteSettings'), 'the server\'s SETTINGS')
  const { stream, done } = h2Request(session, '/events')
  await within(PROMPTLY, once(stream, 'response'), 'the response head')
  const socket = await nextSocket(up)
  const event = `data: ${'x'.repeat(20 * 1024)}\n\n`
  piece(socket, event)
  // Heartbeats would be due several times over by now.
  await sleep(3 * SILENCE)
  piece(socket, 'data: end\n\n')
  socket.end(LAST_CHUNK)
  session.settings({ initialWindowSize: 65535 })
  const received = await within(PROMPTLY, done, 'the end of the response, once the client granted a window')
  t.equal(received.ending, 'end')
  t.equal(count(received.body, HEARTBEAT), 0, 'no heartbeat')
  t.equal(received.body, `${event}data: end\n\n`, 'the events, whole')
  t.match(up.seen[0], /^GET \/events /, 'the upstream saw the request')
  const check = await h2Session(t, 'h2c', port)
  t.equal((await within(PROMPTLY, h2Request(check, '/alive').done, 'an answer to /alive')).body, 'ok', 'the process is alive and still proxying')
})

/** An upstream that sends one event and then nothing: the deadline's idle clock must still end it. */
async function silentAfterOne (t: Test, client: Client, socket: net.Socket): Promise<{ quietFor: number }> {
  piece(socket, 'data: only\n\n')
  await client.until(body => body.includes('data: only\n\n'), 'the one event')
  const quietFrom = Date.now()
  await client.until(body => count(body, HEARTBEAT) >= 2, 'two heartbeats')
  const upstreamClosed = once(socket, 'close')
  // Bounded above the latest end the assertions allow (3 x IDLE): a deadline that took the
  // heartbeats for activity would never end the stream, and this names that.
  const ending = await within(4 * IDLE, client.done, `streamIdleTimeout (${IDLE} ms) ended the stream although heartbeats kept coming`)
  const quietFor = Date.now() - quietFrom
  await within(PROMPTLY, upstreamClosed, 'the upstream connection closed at the idle deadline')
  t.equal(ending, 'end', 'the stream ended cleanly (EventSource reconnects)')
  t.equal(withoutHeartbeats(client.body()).rest, 'data: only\n\n', 'the event, then heartbeats only')
  return { quietFor }
}

const IDLE = 1000

t.test('HTTP/1.1: heartbeats are not activity for streamIdleTimeout', async (t) => {
  const up = await eventUpstream(t)
  const { url } = await heartbeatApp(t, up.url, {}, { deadline: { streamIdleTimeout: IDLE } })
  const client = h1Client(`${url}/events`)
  const { quietFor } = await silentAfterOne(t, client, await nextSocket(up))
  // The idle clock cuts between 1x and 1.5x its timeout after the last byte; the rest is margin for a
  // loaded machine (the client's clock starts when it reads the event). Counting heartbeats, it never would.
  t.ok(quietFor >= 0.75 * IDLE && quietFor < 3 * IDLE, `ended ${quietFor} ms after the upstream went quiet (streamIdleTimeout ${IDLE})`)
  t.match(up.seen[0], /^GET \/events /, 'the upstream saw the request, and its connection was closed')
  await alive(t, url)
})

for (const mode of H2_MODES) {
  t.test(`HTTP/2 (${mode}): heartbeats are not activity for streamIdleTimeout`, async (t) => {
    const up = await eventUpstream(t)
    const { port } = await heartbeatApp(t, up.url, {}, { deadline: { streamIdleTimeout: IDLE }, fastify: h2ServerOptions(t, mode) as FastifyServerOptions })
    const client = await h2Client(t, mode, port, '/events')
    const { quietFor } = await silentAfterOne(t, client, await nextSocket(up))
    t.ok(quietFor >= 0.75 * IDLE && quietFor < 3 * IDLE, `ended ${quietFor} ms after the upstream went quiet (streamIdleTimeout ${IDLE})`)
    t.match(up.seen[0], /^GET \/events /, 'the upstream saw the request, and its connection was closed')
    const session = await h2Session(t, mode, port)
    t.equal((await within(PROMPTLY, h2Request(session, '/alive').done, 'an answer to /alive')).body, 'ok', 'the process is alive and still proxying')
  })
}

t.test('sseHeartbeat is validated', async (t) => {
  for (const bad of [-1, 1.5, '100', null]) {
    const app = Fastify()
    app.register(proxy, { upstream: 'http://127.0.0.1:1', sseHeartbeat: bad as number })
    await t.rejects(async () => { await app.ready() }, { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION' }, `refuses ${JSON.stringify(bad)}`)
    await app.close()
  }
})
