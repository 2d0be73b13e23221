// The response phase: from arrival until the headers are sent.
import { AsyncLocalStorage } from 'node:async_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import net from 'node:net'
import t from 'tap'
import { Pool, request } from 'undici'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import deadline, { ClientDisconnectedError, DeadlineExceededError, requestSignal, type DeadlineOptions } from '../../plugins/deadline/index.js'
import { aborted, deadlineApp, listen } from '../helpers/deadline-app.js'
import { receiveWithin, within } from '../helpers/bounded.js'

t.test('a slow handler gets the 504 at the deadline and its signal aborts', async (t) => {
  const { app, logs } = await deadlineApp(t, { timeout: 300 })
  let reason: unknown
  app.get('/slow', async (req) => {
    reason = await aborted(req.deadline.signal)
    return 'too late'
  })
  const base = await listen(app)
  const res = await receiveWithin(`${base}/slow`)
  t.equal(res.status, 504)
  t.ok(res.headersAt >= 280 && res.headersAt < 300 + 400, `504 after ${res.headersAt} ms`)
  t.match(res.headers['content-type'], /^application\/json/)
  t.same(JSON.parse(res.body), {
    statusCode: 504,
    code: 'FST_STREAMLINE_DEADLINE_EXCEEDED',
    error: 'Gateway Timeout',
    message: JSON.parse(res.body).message
  })
  t.match(JSON.parse(res.body).message, /phase: response/)
  t.ok(reason instanceof DeadlineExceededError)
  t.equal((reason as DeadlineExceededError).phase, 'response')
  await sleep(20)
  const expiries = logs.filter((l) => l.msg === 'deadline exceeded')
  t.equal(expiries.length, 1, 'one log line per expiry')
  t.match(expiries[0], { level: 40, route: '/slow', phase: 'response', reqId: String })
  t.notOk(logs.some((l) => /already sent/i.test(JSON.stringify(l))), 'no "already sent" warning')
})

t.test('requests queued on one route each expire at their own deadline, whatever finished in between', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 400 })
  const upstreamSaw: string[] = []
  app.get('/slow/:n', async (req) => {
    const { n } = req.params as { n: string }
    await aborted(req.deadline.signal)
    upstreamSaw.push(n)
    return 'too late'
  })
  app.get('/fast', async () => 'ok')
  const base = await listen(app)
  // Five slow requests 100 ms apart, with quick ones finishing between them: the route's one
  // timer must move on from each head to the next, and a head that left must not stall it.
  const slow: Array<Promise<Awaited<ReturnType<typeof receiveWithin>>>> = []
  const fast: Array<Promise<Awaited<ReturnType<typeof receiveWithin>>>> = []
  for (let n = 0; n < 5; n++) {
    slow.push(receiveWithin(`${base}/slow/${n}`))
    fast.push(receiveWithin(`${base}/fast`))
    await sleep(100)
  }
  for (const res of await Promise.all(fast)) t.equal(res.body, 'ok')
  const answers = await Promise.all(slow)
  answers.forEach((res, n) => {
    t.equal(res.status, 504, `slow request ${n}`)
    t.ok(res.headersAt >= 380 && res.headersAt < 400 + 400, `slow request ${n}: 504 after ${res.headersAt} ms of its own`)
  })
  t.same([...upstreamSaw].sort(), ['0', '1', '2', '3', '4'], 'every handler saw its signal abort')
})

t.test('a request held up by an app hook still expires at its own deadline, not behind later arrivals', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 400 })
  // An app-level hook that awaits: a request stamped at arrival reaches the route's queue late,
  // behind requests that arrived after it. Its deadline still counts from its arrival.
  app.addHook('onRequest', async (req) => { if (req.headers['x-hold'] !== undefined) await sleep(Number(req.headers['x-hold'])) })
  let handled = 0
  app.get('/slow', async (req) => { handled++; await aborted(req.deadline.signal); return 'too late' })
  const base = await listen(app)
  const held = receiveWithin(`${base}/slow`, { headers: { 'x-hold': '350' } })
  await sleep(300)
  const later = [receiveWithin(`${base}/slow`), receiveWithin(`${base}/slow`)]
  const res = await held
  t.equal(res.status, 504)
  t.ok(res.headersAt >= 380 && res.headersAt < 600, `504 after ${res.headersAt} ms (deadline 400 ms; the later arrivals expire at about 700)`)
  for (const other of await Promise.all(later)) t.equal(other.status, 504)
  t.equal(handled, 3, 'all three reached the handler')
})

t.test('abort listeners run in their own request\'s AsyncLocalStorage context', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 300 })
  const als = new AsyncLocalStorage<string>()
  const seen: Record<string, string | undefined> = {}
  app.get('/slow/:id', async (req) => {
    const { id } = req.params as { id: string }
    return await als.run(id, async () => {
      const signal = req.deadline.signal
      signal.addEventListener('abort', () => { seen[id] = als.getStore() })
      await aborted(signal)
      return 'too late'
    })
  })
  const base = await listen(app)
  // b arrives while a is queued: the route's timer was armed inside a's request.
  const a = receiveWithin(`${base}/slow/a`)
  await sleep(50)
  const b = receiveWithin(`${base}/slow/b`)
  t.same([(await a).status, (await b).status], [504, 504], 'the client saw both 504s')
  t.same(seen, { a: 'a', b: 'b' })
})

t.test('a handler that ignores the signal still gets the 504 on time, and its late reply is dropped', async (t) => {
  const { app, logs } = await deadlineApp(t, { timeout: 200 })
  let lateSendDone = false
  app.get('/ignore', (_req, reply) => {
    setTimeout(() => {
      reply.code(200).send('late')
      lateSendDone = true
    }, 600)
  })
  app.get('/ignore-async', async () => {
    await sleep(600)
    return 'late'
  })
  app.get('/reject', async () => {
    await sleep(600)
    throw new Error('handler failed after the deadline')
  })
  app.get('/rejects-with-abort', async (req) => {
    await new Promise((_resolve, reject) => req.deadline.signal.addEventListener('abort', () => reject(req.deadline.signal.reason)))
  })
  const base = await listen(app)
  for (const path of ['/ignore', '/ignore-async', '/reject', '/rejects-with-abort']) {
    const res = await receiveWithin(`${base}${path}`)
    t.equal(res.status, 504, path)
    t.equal(JSON.parse(res.body).code, 'FST_STREAMLINE_DEADLINE_EXCEEDED')
  }
  await sleep(800)
  t.ok(lateSendDone, 'the late send ran without throwing')
  t.notOk(logs.some((l) => /already sent|ERR_HTTP_HEADERS_SENT/i.test(JSON.stringify(l))), 'no warning for late sends')
  const errors = logs.filter((l) => l.level >= 50)
  t.equal(errors.length, 1, 'a rejection with the abort is not logged as an error')
  t.match(errors[0], { err: { message: 'handler failed after the deadline' } }, 'a genuine late failure still is')
  t.equal(logs.filter((l) => l.msg === 'deadline exceeded').length, 4, 'one warn line per expiry')
})

t.test('expiry right when the handler replies: exactly one well-formed response, 500 times', async (t) => {
  const { app, logs } = await deadlineApp(t, { timeout: 40 })
  app.get('/race', (_req, reply) => { setTimeout(() => reply.send({ ok: true }), 40) })
  const base = await listen(app)
  const pool = new Pool(base, { connections: 20 })
  t.teardown(() => pool.close())
  const counts = { ok: 0, expired: 0 }
  const one = async (): Promise<void> => {
    const res = await pool.request({ path: '/race', method: 'GET' })
    const body = await res.body.json() as Record<string, unknown>
    if (res.statusCode === 200) {
      t.same(body, { ok: true })
      counts.ok++
    } else {
      t.equal(res.statusCode, 504)
      t.equal(body.code, 'FST_STREAMLINE_DEADLINE_EXCEEDED')
      counts.expired++
    }
  }
  for (let batch = 0; batch < 25; batch++) await within(10_000, Promise.all(Array.from({ length: 20 }, one)), `the answers of batch ${batch}`)
  t.equal(counts.ok + counts.expired, 500, `${counts.ok} answered, ${counts.expired} expired`)
  await sleep(100)
  t.notOk(logs.some((l) => /already sent|ERR_HTTP_HEADERS_SENT/i.test(JSON.stringify(l))), 'no double-send warning')
})

t.test('per-route override and opt-out', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 200 })
  app.get('/longer', { config: { deadline: { timeout: 1000 } } }, async () => { await sleep(500); return 'ok' })
  app.get('/shorter', { config: { deadline: { timeout: 100 } } }, async () => { await sleep(500); return 'ok' })
  app.get('/out', { config: { deadline: false } }, async (req) => {
    await sleep(500)
    return { aborted: req.deadline.signal.aborted, expiresAt: String(req.deadline.expiresAt), remaining: String(req.deadline.remaining()) }
  })
  const base = await listen(app)
  const longer = await receiveWithin(`${base}/longer`)
  t.equal(longer.status, 200)
  t.equal(longer.body, 'ok')
  const shorter = await receiveWithin(`${base}/shorter`)
  t.equal(shorter.status, 504)
  t.ok(shorter.headersAt < 450, `route timeout applied (${shorter.headersAt} ms)`)
  const out = await receiveWithin(`${base}/out`)
  t.equal(out.status, 200)
  t.same(JSON.parse(out.body), { aborted: false, expiresAt: 'Infinity', remaining: 'Infinity' })
})

t.test('a POST whose body was read is not aborted while the client waits', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 5000 })
  app.post('/upload', async (req) => {
    await sleep(400)
    return { aborted: req.deadline.signal.aborted, size: JSON.stringify(req.body).length }
  })
  const base = await listen(app)
  const res = await receiveWithin(`${base}/upload`, { method: 'POST', headers: { 'content-type': 'application/json' } }, JSON.stringify({ data: 'x'.repeat(10_000) }))
  t.equal(res.status, 200)
  t.same(JSON.parse(res.body), { aborted: false, size: 10_011 })
})

t.test('client disconnect aborts the signal with the disconnect reason', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 5000 })
  const reason = new Promise<unknown>((resolve) => {
    app.get('/wait', async (req) => resolve(await aborted(req.deadline.signal)))
  })
  const base = await listen(app)
  const started = Date.now()
  const socket = net.connect(Number(new URL(base).port), '127.0.0.1')
  socket.write('GET /wait HTTP/1.1\r\nHost: x\r\n\r\n')
  await sleep(100)
  socket.destroy()
  const why = await within(5000, reason, 'the abort of the signal after the client left')
  t.ok(why instanceof ClientDisconnectedError, 'reason is ClientDisconnectedError')
  t.equal((why as { code: string }).code, 'FST_STREAMLINE_CLIENT_DISCONNECTED')
  t.ok(Date.now() - started < 2000, 'aborted promptly, long before the deadline')
})

t.test('an unread request body: the 504 closes the connection', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 200 })
  app.addContentTypeParser('application/octet-stream', (_req, _payload, _done) => { /* never reads the body */ })
  app.post('/never-reads', async () => 'unreachable')
  const base = await listen(app)
  const socket = net.connect(Number(new URL(base).port), '127.0.0.1')
  let raw = ''
  socket.setEncoding('utf8')
  socket.on('data', (d: string) => { raw += d })
  const closed = new Promise((resolve) => socket.on('close', resolve))
  socket.write('POST /never-reads HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\nsome bytes')
  await within(5000, closed, 'the server closing the connection after its 504')
  t.match(raw, /^HTTP\/1\.1 504 /)
  t.match(raw, /\r\nconnection: close\r\n/i)
  t.match(raw, /"code":"FST_STREAMLINE_DEADLINE_EXCEEDED"/)
})

t.test('a hijacked route keeps its signal and gets the 504 written on the raw response', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 200 })
  let signalAborted = false
  app.get('/hijacked', (req, reply) => {
    reply.hijack()
    req.deadline.signal.addEventListener('abort', () => { signalAborted = true })
  })
  const base = await listen(app)
  const res = await receiveWithin(`${base}/hijacked`)
  t.equal(res.status, 504)
  t.equal(JSON.parse(res.body).code, 'FST_STREAMLINE_DEADLINE_EXCEEDED')
  t.ok(signalAborted)
})

t.test('invalid options fail at registration with a clear message', async (t) => {
  const cases: Array<[DeadlineOptions, RegExp]> = [
    [{ timeout: -1 }, /timeout.*milliseconds/],
    [{ streamIdleTimeout: Number.NaN }, /streamIdleTimeout/],
    [{ statusCode: 200 }, /statusCode/],
    [{ trustIncoming: 'yes' as unknown as boolean }, /trustIncoming/],
    [{ propagationHeader: 'bad header' }, /propagationHeader/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(deadline, options) }, { code: 'FST_STREAMLINE_INVALID_OPTION', message })
    await app.close()
  }
  const app = Fastify()
  await app.register(deadline, {})
  t.throws(() => app.get('/x', { config: { deadline: { timeout: 'soon' as unknown as number } } }, async () => 'x'),
    { code: 'FST_STREAMLINE_INVALID_OPTION', message: /config\.deadline\.timeout/ })
  await app.close()
})

t.test('undici client sees the same 504', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 150 })
  app.get('/slow', async () => { await sleep(1000); return 'late' })
  const base = await listen(app)
  const res = await within(5000, request(`${base}/slow`), 'the 504\'s head')
  t.equal(res.statusCode, 504)
  t.equal(res.headers['content-length'], String(Buffer.byteLength(await within(5000, res.body.text(), 'the 504\'s body'))))
})

t.test('requestSignal: the deadline signal, or a disconnect-only one on opted-out routes and without the plugin', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 5000 })
  const seen: Record<string, unknown> = {}
  const watchSignal = (name: string) => async (req: FastifyRequest, reply: FastifyReply) => {
    const signal = requestSignal(req, reply)
    if (name === 'with') seen.same = signal === req.deadline.signal
    seen[name] = await aborted(signal)
    return 'unreachable'
  }
  app.get('/with', watchSignal('with'))
  app.get('/out', { config: { deadline: false } }, watchSignal('out'))
  app.get('/finished', { config: { deadline: false } }, async (req, reply) => {
    const signal = requestSignal(req, reply)
    reply.raw.on('close', () => { seen.finishedAborted = signal.aborted })
    return 'done'
  })
  const plain = Fastify()
  t.teardown(() => plain.close())
  plain.get('/plain', watchSignal('plain'))
  const base = await listen(app)
  const plainBase = await listen(plain)
  for (const url of [`${base}/with`, `${base}/out`, `${plainBase}/plain`]) {
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1')
    socket.write(`GET ${new URL(url).pathname} HTTP/1.1\r\nHost: x\r\n\r\n`)
    await sleep(100)
    socket.destroy()
  }
  t.equal((await receiveWithin(`${base}/finished`)).body, 'done')
  // Bounded: a signal that never aborts fails the assertions below.
  const stop = Date.now() + 5000
  while ((seen.plain === undefined || seen.out === undefined || seen.with === undefined) && Date.now() < stop) await sleep(10)
  for (const name of ['with', 'out', 'plain']) t.ok(seen[name] instanceof ClientDisconnectedError, `${name}: aborted by the disconnect`)
  t.equal(seen.same, true, 'with a deadline it is the deadline signal')
  t.equal(seen.finishedAborted, false, 'a completed response does not abort it')
})

t.test('an opted-out route hands out a fresh never-aborting signal per read', async (t) => {
  const { app } = await deadlineApp(t, {})
  app.get('/out', { config: { deadline: false } }, async (req) => {
    const a = req.deadline.signal
    return { fresh: a !== req.deadline.signal, aborted: a.aborted }
  })
  const base = await listen(app)
  t.same(JSON.parse((await receiveWithin(`${base}/out`)).body), { fresh: true, aborted: false })
})
