// app.close() on an ingress whose upstream (another process) never ends its streams: the
// listener closes at once, an event stream ends at an event boundary with a retry field, a
// download and a request its upstream never answers are cut at drainTimeout, an ordinary
// request in flight finishes, keep-alive connections are closed, and close() resolves within
// drainTimeout + 1 s.
import Fastify, { type FastifyInstance } from 'fastify'
import net from 'node:net'
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import { test, type Test } from 'tap'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'
import { childUpstream, type ChildUpstream } from '../helpers/child-upstream.js'
import { refused, Stream } from '../helpers/stream-client.js'
import { within } from '../helpers/bounded.js'

interface Ingress {
  app: FastifyInstance
  url: string
  /** Resolves once the proxy's preClose hook (the start of the drain) has run. */
  drainStarted: Promise<void>
}

async function ingress (t: Test, options: ProxyOptions): Promise<Ingress> {
  const app = Fastify({ logger: false })
  await app.register(proxy, options)
  let started!: () => void
  const drainStarted = new Promise<void>(resolve => { started = resolve })
  // A later context: its preClose runs after the proxy's.
  await app.register(async (instance) => { instance.addHook('preClose', (done) => { started(); done() }) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { app.server.closeAllConnections(); await app.close() })
  return { app, url: `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`, drainStarted }
}

/** Open file descriptors and active timers of this process. */
function resources (): { fds: number, timers: number } {
  return { fds: readdirSync('/proc/self/fd').length, timers: process.getActiveResourcesInfo().filter(name => name === 'Timeout').length }
}

/** The resources once back to `baseline`, or as they are after a bounded number of event-loop turns (closing sockets take a few). */
async function settled (baseline: { fds: number, timers: number }): Promise<{ fds: number, timers: number }> {
  let now = resources()
  for (let turn = 0; turn < 200 && (now.fds > baseline.fds || now.timers > baseline.timers); turn++) {
    await new Promise(resolve => setTimeout(resolve, 10))
    now = resources()
  }
  return now
}

test('an event stream mid-event ends at the next event boundary, after a retry field', async (t) => {
  const upstream = await childUpstream(t)
  const { app, url, drainStarted } = await ingress(t, { upstream: upstream.url, prefix: '/up', drainTimeout: 5000 })
  const sse = new Stream(`${url}/up/held`)
  await within(10_000, sse.until(body => body.endsWith('data: tw')), 'event 1 and half of event 2 of /held')

  const started = Date.now()
  const closing = app.close()
  await within(5000, drainStarted, 'the start of the drain (preClose)')
  t.equal(await refused(url), 'ECONNREFUSED', 'the listening socket closed at once')
  t.equal(sse.ending, null, 'the stream is still open: the drain waits for the end of the event in progress')
  // The rest of event 2 and the first half of event 3 arrive in one piece.
  upstream.send('more')

  t.equal(await within(5000, sse.done, 'the end of the event stream'), 'end', 'the client saw a complete response (last chunk received), not a cut')
  t.equal(sse.status, 200)
  t.equal(sse.body, 'id: 1\ndata: one\n\nid: 2\ndata: two\n\nretry: 1000\n\n', 'event 2 completed, then the retry field; nothing of event 3')
  await within(10_000, closing, 'close() resolving')
  const elapsed = Date.now() - started
  t.ok(elapsed < 5000, `close() resolved after ${elapsed} ms, without waiting for drainTimeout`)
  const [closedLine] = await upstream.lines.waitFor(/^(closed|finished) \/held after \d+ writes$/)
  t.equal(closedLine, 'closed /held after 2 writes', 'the upstream saw its response closed (not finished), after the two pieces it wrote')
  t.equal(upstream.child.exitCode, null, 'the upstream process is still running: nothing but the drain ended the stream')
})

/** A keep-alive connection with a request in flight (its upstream answers after 1.5 s), and an idle one that got its answer. */
async function keepAliveClients (t: Test, url: string, upstream: ChildUpstream): Promise<{ busyBytes: () => string, busyClosed: Promise<unknown[]>, idleClosed: Promise<unknown[]> }> {
  const busy = net.connect(Number(new URL(url).port), '127.0.0.1')
  let bytes = ''
  busy.setEncoding('latin1').on('data', (data: string) => { bytes += data })
  const busyClosed = once(busy, 'close')
  busy.write('GET /up/slow?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n')
  await upstream.lines.waitForCount(/^open \/slow$/, 2)
  const idle = net.connect(Number(new URL(url).port), '127.0.0.1')
  const idleClosed = once(idle, 'close')
  idle.write('GET /up/slow?ms=0 HTTP/1.1\r\nHost: x\r\n\r\n')
  const [idleAnswer] = await within(10_000, once(idle, 'data'), 'the answer on the keep-alive connection') as [Buffer]
  t.match(String(idleAnswer), /^HTTP\/1\.1 200 /, 'the keep-alive connection got its answer')
  return { busyBytes: () => bytes, busyClosed, idleClosed }
}

test('close() with a never-ending event stream, download, a request in flight and keep-alive clients', async (t) => {
  const DRAIN = 3000
  const upstream = await childUpstream(t)
  const before = resources()
  const { app, url, drainStarted } = await ingress(t, { upstream: upstream.url, prefix: '/up', drainTimeout: DRAIN, drainRetry: 250 })

  const sse = new Stream(`${url}/up/sse`)
  const download = new Stream(`${url}/up/download`)
  await within(10_000, Promise.all([sse.until(body => (body.match(/\n\n/g) ?? []).length >= 5), download.until(body => body.length >= 64 * 1024)]),
    '5 events of /sse and 64 KB of /download')
  // A request whose upstream will not answer before drainTimeout.
  const stuck = new Stream(`${url}/up/slow?ms=60000`)
  const stuckDone = stuck.done.catch((err: NodeJS.ErrnoException) => err.code)
  await upstream.lines.waitFor(/^open \/slow$/)
  const { busyBytes, busyClosed, idleClosed } = await keepAliveClients(t, url, upstream)

  const started = Date.now()
  const closing = app.close()
  await within(5000, drainStarted, 'the start of the drain (preClose)')
  t.equal(await refused(url), 'ECONNREFUSED', 'new connections are refused at once')
  const [idleHadError] = await within(DRAIN, idleClosed, 'the close of the idle keep-alive connection before drainTimeout') as [boolean]
  t.equal(idleHadError, false, 'the idle keep-alive connection was closed, without an error')

  t.equal(await within(5000, sse.done, 'the end of the event stream'), 'end', 'the event stream ended cleanly')
  t.ok(sse.endedAt - started < DRAIN, 'and at once, not at drainTimeout')
  t.ok(sse.body.endsWith('retry: 250\n\n'), 'its last field is retry: 250')
  const events = sse.body.slice(0, -'retry: 250\n\n'.length).split(/(?<=\n\n)/)
  const wellFormed = /^id: (\d+)\r\ndata: \{"n":(\d+)\}\r\n: pad x*\n\n$/
  t.ok(events.length >= 5 && events.every(e => wellFormed.test(e)), `${events.length} complete events before it, none cut (last: ${JSON.stringify(events.at(-1))})`)
  t.same(events.map(e => Number(wellFormed.exec(e)?.[1])), events.map((_e, i) => i + 1), 'consecutive ids from 1')

  await within(DRAIN + 5000, busyClosed, 'the close of the connection with a request in flight')
  t.match(busyBytes(), /^HTTP\/1\.1 200 [^]*\r\nConnection: close\r\n(?:[^\r]+\r\n)*\r\ndone$/i,
    'the request in flight got its complete answer, with Connection: close, then the server closed the connection')

  t.equal(await within(DRAIN + 5000, download.done, 'the end of the download'), 'cut', 'the download was cut, never ended as if complete')
  t.ok(download.endedAt - started >= DRAIN - 50, `the download ran until drainTimeout (${download.endedAt - started} ms)`)
  t.equal(await within(DRAIN + 5000, stuckDone, 'the end of the stuck request'), 'ECONNRESET', 'a request still waiting for its upstream at drainTimeout was cut (no answer, connection reset)')
  await within(DRAIN + 5000, closing, 'close() resolving')
  const elapsed = Date.now() - started
  t.ok(elapsed >= DRAIN - 50 && elapsed < DRAIN + 1000, `close() resolved ${elapsed} ms after it was called (drainTimeout ${DRAIN} ms)`)

  // ExampleLines.waitFor rejects, naming the line, after 10 s.
  await upstream.lines.waitFor(/^closed \/sse after \d+ writes$/)
  await upstream.lines.waitFor(/^closed \/download after \d+ writes$/)
  await upstream.lines.waitFor(/^closed \/slow after 0 writes$/)
  t.equal(upstream.lines.lines.filter(line => /^finished \/slow/.test(line)).length, 2, 'the upstream answered both ordinary requests in full, and saw the stuck one closed')
  t.equal(upstream.child.exitCode, null, 'the upstream is still running: the ingress did not wait for it')
  t.same(await settled(before), before, 'file descriptors and timers back to where they were before the ingress started')
})

test('drainRetry: false ends an event stream without a retry field; the options are validated', async (t) => {
  const upstream = await childUpstream(t)
  const { app, url, drainStarted } = await ingress(t, { upstream: upstream.url, prefix: '/up', drainRetry: false })
  const sse = new Stream(`${url}/up/held`)
  await within(10_000, sse.until(body => body.endsWith('data: tw')), 'event 1 and half of event 2 of /held')
  const closing = app.close()
  await within(5000, drainStarted, 'the start of the drain (preClose)')
  upstream.send('more')
  t.equal(await within(5000, sse.done, 'the end of the event stream'), 'end')
  t.equal(sse.body, 'id: 1\ndata: one\n\nid: 2\ndata: two\n\n', 'ended after event 2, no retry field')
  await within(10_000, closing, 'close() resolving')

  for (const [name, value] of [['drainTimeout', -1], ['drainTimeout', 1.5], ['drainRetry', true], ['drainRetry', '1000']] as const) {
    const bad = Fastify({ logger: false })
    await t.rejects(async () => { await bad.register(proxy, { upstream: upstream.url, [name]: value }) }, { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION', message: new RegExp(name) }, `${name}: ${String(value)} is refused`)
    await bad.close()
  }
})
