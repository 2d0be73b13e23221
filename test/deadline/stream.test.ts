// After the headers: streams are never cut by `timeout`, only by idle gaps and the lifetime.
import http from 'node:http'
import net from 'node:net'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { DeadlineExceededError } from '../../plugins/deadline/index.js'
import { aborted, deadlineApp, listen } from '../helpers/deadline-app.js'
import { receiveWithin, within } from '../helpers/bounded.js'

/** A readable that yields `count` pieces from `make`, one every `every` ms, then ends (or stalls forever when `stall`). */
function paced (count: number, every: number, make: (i: number) => string | Buffer, stall = false): Readable {
  let i = 0
  return new Readable({
    read () {
      if (i === count) {
        if (!stall) this.push(null)
        return
      }
      const piece = make(i++)
      setTimeout(() => this.push(piece), i === 1 ? 0 : every)
    }
  })
}

const event = (i: number): string => `id: ${i}\ndata: tick ${i}\n\n`

/** An endless event stream of 16 KB events, made as fast as the response takes them. */
function endlessEvents (): Readable {
  const data = 'x'.repeat(16 * 1024)
  let i = 0
  return new Readable({ read () { this.push(`id: ${i++}\ndata: ${data}\n\n`) } })
}

/** A raw HTTP/1.1 client that asks for `url` and reads nothing until `readAll()`, which resolves with every byte once the server closes. */
function stalledClient (url: string): { readAll: () => Promise<string> } {
  const { port, pathname } = new URL(url)
  const socket = net.connect(Number(port), '127.0.0.1')
  socket.write(`GET ${pathname} HTTP/1.1\r\nHost: x\r\n\r\n`)
  socket.pause()
  const chunks: Buffer[] = []
  socket.on('data', (data: Buffer) => chunks.push(data))
  socket.on('error', () => {})
  const closed = new Promise<string>(resolve => socket.once('close', () => resolve(Buffer.concat(chunks).toString('latin1'))))
  return { readAll: () => { socket.resume(); return closed } }
}

t.test('an SSE response under a 300 ms timeout streams for 2 s, first event at once', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 300, streamIdleTimeout: 1000 })
  let signal: AbortSignal | undefined
  app.get('/sse', (req, reply) => {
    signal = req.deadline.signal
    reply.type('text/event-stream; charset=utf-8').send(paced(20, 100, event))
  })
  const base = await listen(app)
  const res = await receiveWithin(`${base}/sse`)
  t.equal(res.status, 200)
  t.equal(res.ending, 'end', 'the stream ended by itself')
  t.equal(res.body, Array.from({ length: 20 }, (_, i) => event(i)).join(''), 'every event, byte for byte')
  t.ok(res.chunks[0].at < 250, `first event after ${res.chunks[0].at} ms (spec: 50 ms; margin for a loaded machine)`)
  t.ok(res.chunks[res.chunks.length - 1].at >= 1800, 'still streaming long after the 300 ms timeout')
  t.equal(signal?.aborted, false, 'the signal never aborted')
})

t.test('a 50 MB body with a Content-Length, written over 2 s under a 300 ms timeout, arrives whole', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 300, streamIdleTimeout: 1000 })
  const piece = Buffer.alloc(2 * 1024 * 1024, 'a')
  app.get('/file', (_req, reply) => {
    reply.header('content-length', 25 * piece.length).type('application/octet-stream').send(paced(25, 80, () => piece))
  })
  const base = await listen(app)
  const { bytes, ending, status } = await within(15_000, new Promise<{ bytes: number, ending: string, status: number }>((resolve) => {
    http.get(`${base}/file`, (res) => {
      let bytes = 0
      let ending = 'cut'
      res.on('data', (d: Buffer) => { bytes += d.length })
      res.on('end', () => { ending = 'end' })
      res.on('close', () => resolve({ bytes, ending, status: res.statusCode ?? 0 }))
    })
  }), 'the whole 50 MB body')
  t.equal(status, 200)
  t.equal(ending, 'end')
  t.equal(bytes, 50 * 1024 * 1024)
})

t.test('streaming mode: a long-poll answering after 1 s under a 300 ms timeout', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 300, streamIdleTimeout: 2000 })
  app.get('/poll', { config: { deadline: { streaming: true } } }, async (req) => {
    await sleep(1000)
    return { streaming: req.deadline.streaming, aborted: req.deadline.signal.aborted }
  })
  app.get('/poll-too-long', { config: { deadline: { streaming: true, streamIdleTimeout: 300 } } }, async (req) => {
    await aborted(req.deadline.signal)
    return 'late'
  })
  const base = await listen(app)
  const res = await receiveWithin(`${base}/poll`)
  t.equal(res.status, 200)
  t.same(JSON.parse(res.body), { streaming: true, aborted: false })
  t.ok(res.headersAt >= 950, 'answered after 1 s')
  const silent = await receiveWithin(`${base}/poll-too-long`)
  t.equal(silent.status, 504, 'nothing written within streamIdleTimeout: 504')
  t.match(JSON.parse(silent.body).message, /phase: idle/)
})

t.test('idle expiry: SSE ends cleanly, chunked and short Content-Length bodies are cut', async (t) => {
  const { app, logs } = await deadlineApp(t, { timeout: 300, streamIdleTimeout: 400 })
  const reasons: Record<string, unknown> = {}
  const stalling = (name: string, type: string, length?: number) => {
    app.get(`/${name}`, (req, reply) => {
      aborted(req.deadline.signal).then((reason) => { reasons[name] = reason }, t.fail)
      if (length !== undefined) reply.header('content-length', length)
      reply.type(type).send(paced(3, 50, event, true))
    })
  }
  stalling('sse', 'text/event-stream')
  stalling('chunked', 'text/plain')
  stalling('short', 'text/plain', 100_000)
  const base = await listen(app)
  const [sse, chunked, short] = await Promise.all(['sse', 'chunked', 'short'].map((p) => receiveWithin(`${base}/${p}`)))
  const expected = [0, 1, 2].map(event).join('')
  t.equal(sse.ending, 'end', 'SSE: a clean end, so EventSource reconnects')
  t.equal(sse.body, expected)
  t.equal(chunked.ending, 'cut', 'chunked: the client sees a cut, not a terminating chunk')
  t.equal(chunked.body, expected)
  t.equal(short.ending, 'cut', 'short Content-Length: cut')
  for (const res of [sse, chunked, short]) {
    const last = res.chunks[res.chunks.length - 1].at
    t.ok(last < 400, 'the last write came early')
  }
  await sleep(50)
  for (const name of ['sse', 'chunked', 'short']) {
    t.ok(reasons[name] instanceof DeadlineExceededError, `${name}: signal aborted`)
    t.equal((reasons[name] as DeadlineExceededError).phase, 'idle')
  }
  t.equal(logs.filter((l) => l.msg === 'deadline exceeded' && l.phase === 'idle').length, 3)
})

t.test('lifetime expiry: a flowing SSE ends cleanly and a flowing download is cut at maxStreamDuration', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 300, streamIdleTimeout: 400, maxStreamDuration: 800 })
  let phase = ''
  app.get('/sse', (req, reply) => {
    aborted(req.deadline.signal).then((r) => { phase = (r as DeadlineExceededError).phase }, t.fail)
    reply.type('text/event-stream').send(paced(1000, 50, event))
  })
  app.get('/download', (_req, reply) => {
    reply.header('content-length', 1000 * 1024).send(paced(1000, 50, () => Buffer.alloc(1024)))
  })
  const base = await listen(app)
  const started = Date.now()
  const [sse, download] = await Promise.all([receiveWithin(`${base}/sse`), receiveWithin(`${base}/download`)])
  const took = Date.now() - started
  t.ok(took >= 750 && took < 800 + 700, `ended at the lifetime (${took} ms)`)
  t.equal(sse.ending, 'end')
  t.match(sse.body, /^id: 0\ndata: tick 0\n\n/)
  t.ok(sse.body.endsWith('\n\n'), 'SSE ends on an event boundary')
  t.equal(download.ending, 'cut')
  t.equal(phase, 'lifetime')
})

t.test('lifetime expiry: an SSE whose client stopped reading is cut (a clean end would never reach it)', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 300, streamIdleTimeout: 10_000, maxStreamDuration: 500 })
  let responseClosed: Promise<number> | undefined
  let phase = ''
  const arrived = new Promise<void>(resolve => {
    app.get('/sse', (req, reply) => {
      const arrival = Date.now()
      responseClosed = new Promise(resolve => reply.raw.once('close', () => resolve(Date.now() - arrival)))
      aborted(req.deadline.signal).then((r) => { phase = (r as DeadlineExceededError).phase }, t.fail)
      reply.type('text/event-stream').send(endlessEvents())
      resolve()
    })
  })
  const client = stalledClient(`${await listen(app)}/sse`)
  await within(5000, arrived, 'the request reaching the handler')
  const closedAfter = await within(3000, responseClosed as Promise<number>, 'the response closed after maxStreamDuration (500 ms)')
  t.ok(closedAfter >= 450, `closed at the lifetime (${closedAfter} ms after arrival)`)
  const text = await within(5000, client.readAll(), 'the client connection closing once it reads again')
  t.match(text, /^HTTP\/1\.1 200 OK\r\n/, 'the stream had started')
  t.match(text, /\r\ncontent-type: text\/event-stream/i)
  t.ok(text.length > 64 * 1024, `the handler had written past the socket buffers (${text.length} bytes arrived)`)
  t.notOk(text.endsWith('\r\n0\r\n\r\n'), 'no chunked terminator: the stream was cut, not ended')
  t.equal(phase, 'lifetime')
})

t.test('a hijacked SSE written with writeHead is recognised as an event stream', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 200, streamIdleTimeout: 300 })
  let streaming = false
  app.get('/raw', (req, reply) => {
    reply.hijack()
    reply.raw.writeHead(200, { 'Content-Type': 'Text/Event-Stream;charset=UTF-8' })
    reply.raw.write(event(0))
    streaming = req.deadline.streaming
  })
  const base = await listen(app)
  const res = await receiveWithin(`${base}/raw`)
  t.equal(res.ending, 'end', 'ended cleanly at the idle timeout')
  t.equal(res.body, event(0))
  t.ok(streaming, 'request.deadline.streaming is true once the event-stream head is out')
})

t.test('a stall right after the headers is cut by the idle timer, not after the whole timeout', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 10_000, streamIdleTimeout: 300 })
  app.get('/stall', (_req, reply) => { reply.type('text/plain').send(paced(1, 0, () => 'first bytes', true)) })
  const base = await listen(app)
  const started = Date.now()
  const res = await receiveWithin(`${base}/stall`)
  const took = Date.now() - started
  t.equal(res.body, 'first bytes')
  t.equal(res.ending, 'cut')
  t.ok(took >= 300 && took < 1500, `cut after ${took} ms (idle 300 ms, timeout 10 s)`)
})
