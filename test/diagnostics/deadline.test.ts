// The deadline plugin's diagnostics channels, on a real server: each expiry and each client
// disconnect is published once, with what the client actually saw.
import http from 'node:http'
import { once } from 'node:events'
import t from 'tap'
import { CHANNELS, type ClientDisconnectedMessage, type DeadlineExpiredMessage } from '../../index.js'
import { deadlineApp, listen } from '../helpers/deadline-app.js'
import { subscribe } from '../helpers/channels.js'
import { receiveWithin, within } from '../helpers/bounded.js'

t.test('deadline:expired says which phase and what the client got', async (t) => {
  const expired = subscribe<DeadlineExpiredMessage>(t, CHANNELS.deadlineExpired).messages
  const { app } = await deadlineApp(t, { timeout: 300, streamIdleTimeout: 400 })
  app.get('/slow', () => new Promise(() => {}))
  app.get('/quiet-events', (_req, reply) => {
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
    reply.raw.write('data: one\n\n')
    reply.hijack()
  })
  app.get('/quiet-download', (_req, reply) => {
    reply.raw.writeHead(200, { 'content-type': 'application/octet-stream' })
    reply.raw.write('part')
    reply.hijack()
  })
  app.get('/long', { config: { deadline: { maxStreamDuration: 500 } } }, (_req, reply) => {
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
    const timer = setInterval(() => reply.raw.write('data: tick\n\n'), 50)
    reply.raw.on('close', () => clearInterval(timer))
    reply.hijack()
  })
  const base = await listen(app)

  const slow = await receiveWithin(`${base}/slow`)
  t.equal(slow.status, 504)
  const events = await receiveWithin(`${base}/quiet-events`)
  t.equal(events.ending, 'end')
  const download = await receiveWithin(`${base}/quiet-download`)
  t.equal(download.ending, 'cut')
  const long = await receiveWithin(`${base}/long`)
  t.equal(long.ending, 'end')

  t.same(expired.map(m => [m.route, m.phase, m.outcome]), [
    ['/slow', 'response', '504'],
    ['/quiet-events', 'idle', 'clean-end'],
    ['/quiet-download', 'idle', 'cut'],
    ['/long', 'lifetime', 'clean-end']
  ], 'one message per expiry, in order')
  t.ok(expired[0].elapsed >= 290 && expired[0].elapsed < 2000, `elapsed ${expired[0].elapsed} ms (timeout 300)`)
  t.equal(expired[0].request.url, '/slow', 'the request is there')
  t.equal(expired[0].reply.statusCode, 504, 'and the reply')
})

t.test('deadline:client-disconnected says whether the response had started', async (t) => {
  const arrivals = subscribe<ClientDisconnectedMessage>(t, CHANNELS.clientDisconnected)
  const left = arrivals.messages
  const { app } = await deadlineApp(t, { timeout: 10_000 })
  const arrived = new Map<string, () => void>()
  const arrival = (path: string): Promise<void> => new Promise(resolve => arrived.set(path, resolve))
  app.get('/wait', () => { arrived.get('/wait')?.(); return new Promise(() => {}) })
  app.get('/stream', (_req, reply) => {
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
    reply.raw.write('data: one\n\n')
    reply.hijack()
  })
  app.get('/done', () => 'ok')
  const base = await listen(app)

  const waiting = arrival('/wait')
  const before = http.get(`${base}/wait`, { agent: false })
  before.on('error', () => {})
  await within(5000, waiting, 'the /wait request reaching its handler')
  before.destroy()

  const during = http.get(`${base}/stream`, { agent: false })
  during.on('error', () => {})
  const [res] = await within(5000, once(during, 'response'), 'the head of /stream') as [http.IncomingMessage]
  res.on('error', () => {})
  const [first] = await within(5000, once(res, 'data'), 'the first event of /stream') as [Buffer]
  t.equal(String(first), 'data: one\n\n', 'the client got the first event before it left')
  during.destroy()

  await within(5000, once(during, 'close'), 'the close of the /stream request')
  t.equal((await receiveWithin(`${base}/done`)).body, 'ok', 'a completed request is not a disconnect')
  await within(5000, arrivals.waitFor(2), 'two deadline:client-disconnected messages')
  t.same(left.map(m => [m.request.url, m.phase]), [['/wait', 'response'], ['/stream', 'stream']])
  t.ok(left.every(m => m.elapsed >= 0 && m.elapsed < 5000), 'elapsed is measured from arrival')
})
