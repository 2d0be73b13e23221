// HTTP/2 rapid reset: streams opened and reset at once on one client connection must not turn
// into as many upstream connections. The proxy bounds what one connection can hold open
// (maxConcurrentStreams 100 unless the app chose a bound), so one burst starts at most that many
// upstream requests, and so at most that many connects; without it one burst opened more than one
// connection per stream. Streams reset in the same write as they were opened (the attack proper:
// each one is closed before the next opens, so no stream bound applies) cost the upstream a
// bounded number of connects in all, which are kept and reused, and not one request written:
// undici used to open a connection per stream and close it again when its request turned out
// cancelled, burst after burst.
import type { FastifyServerOptions } from 'fastify'
import http from 'node:http'
import http2 from 'node:http2'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { H2_MODES, h2Request, h2ServerOptions, h2Session, type H2Mode } from '../helpers/h2.js'
import { within } from '../helpers/bounded.js'
import { frame, GOAWAY, HEADERS, literal, rawH2, RST_STREAM, type RawFrame } from '../helpers/h2-frames.js'
import { CONNECTS_IN_FLIGHT } from '../../plugins/proxy/upstream/connect-gate.js'

const PING = 0x6

const BURST = 1000
const BOUND = 100

/** An upstream that counts its connections (opened, closed) and requests. */
async function countingUpstream (t: Test): Promise<{ url: string, counts: { connections: number, closed: number, requests: number } }> {
  const counts = { connections: 0, closed: 0, requests: 0 }
  const up = await upstream(t, (_req: http.IncomingMessage, res: http.ServerResponse) => { counts.requests++; res.end('ok') })
  // Idle connections kept for the whole test, whatever a loaded machine makes it last.
  up.server.keepAliveTimeout = 60_000
  up.server.on('connection', (socket) => {
    counts.connections++
    socket.on('close', () => { counts.closed++ })
  })
  return { url: up.url, counts }
}

async function proxyPort (t: Test, mode: H2Mode, url: string, settings?: http2.Settings, keepAliveTimeout?: number): Promise<number> {
  const base = h2ServerOptions(t, mode)
  const server = settings === undefined ? base : base.https === undefined ? { ...base, http: { settings } } : { ...base, https: { ...base.https, settings } }
  const { app } = await proxyApp(t, { upstream: url, keepAliveTimeout }, { deadline: { timeout: 10_000 }, fastify: server as unknown as FastifyServerOptions })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening')
  return address.port
}

/**
 * Opens `count` streams on a new connection in one write, ignoring the server's SETTINGS as an
 * attacker does, and resets them all once the server has read them (its answer to a PING written
 * after them): by then each stream it accepted has started its upstream request.
 */
async function burst (t: Test, port: number, count: number): Promise<void> {
  const { socket, until, frames } = await rawH2(t, port)
  const block = Buffer.concat([Buffer.from([0x82, 0x86]), literal(':path', '/reset'), literal(':authority', 'proxy')])
  const ids = Array.from({ length: count }, (_, i) => 1 + 2 * i)
  const answered = (): boolean => frames.some(f => f.type === GOAWAY) || frames.filter(f => f.type === PING && (f.flags & 0x1) === 1).length >= 2
  socket.write(Buffer.concat([...ids.map(id => frame(HEADERS, 0x5, id, block)), frame(PING, 0, 0, Buffer.alloc(8))]))
  // A server may also end a connection that opened more streams than it allows (GOAWAY).
  await until(f => (f.type === PING && (f.flags & 0x1) === 1) || f.type === GOAWAY)
  if (!socket.destroyed) {
    socket.write(Buffer.concat([...ids.map(id => frame(RST_STREAM, 0, id, Buffer.from([0, 0, 0, 0x8]))), frame(PING, 0, 0, Buffer.alloc(8))]))
    await until(f => f.type === GOAWAY || (answered() && f.type === PING))
  }
  socket.destroy()
}

/**
 * On one hand-driven connection, `count` streams each opened and reset in the same write (HEADERS
 * then RST_STREAM), resolved once the server has read them all (its answer to a PING after them).
 */
async function resetBurst (h2: Awaited<ReturnType<typeof rawH2>>, firstId: number, count: number): Promise<void> {
  const block = Buffer.concat([Buffer.from([0x82, 0x86]), literal(':path', '/reset'), literal(':authority', 'proxy')])
  const ids = Array.from({ length: count }, (_, i) => firstId + 2 * i)
  const acks = (): number => h2.frames.filter(f => f.type === PING && (f.flags & 0x1) === 1).length
  const before = acks()
  const cancel = Buffer.from([0, 0, 0, 0x8])
  h2.socket.write(Buffer.concat([...ids.flatMap(id => [frame(HEADERS, 0x5, id, block), frame(RST_STREAM, 0, id, cancel)]), frame(PING, 0, 0, Buffer.alloc(8))]))
  await h2.until((f: RawFrame) => f.type === GOAWAY || (f.type === PING && acks() > before))
}

/** Resolves once `read()` has not changed for 300 ms: the upstream connections the burst started have all arrived. */
async function settled (read: () => number): Promise<number> {
  let last = -1
  while (read() !== last) {
    last = read()
    await new Promise(resolve => setTimeout(resolve, 300))
  }
  return last
}

/** The server's maxConcurrentStreams once its SETTINGS arrived (before that, a client assumes 100). */
async function advertised (session: http2.ClientHttp2Session, expected: number): Promise<number> {
  await within(5000, once(session, 'remoteSettings'), 'the server\'s SETTINGS')
  // The first connection of a server gets the proxy's bound in a second SETTINGS frame.
  const settled = async (): Promise<void> => {
    while (session.remoteSettings.maxConcurrentStreams !== expected) await once(session, 'remoteSettings')
  }
  await within(5000, settled(), `SETTINGS with maxConcurrentStreams ${expected}`).catch(() => {})
  return session.remoteSettings.maxConcurrentStreams ?? 0
}

for (const mode of H2_MODES) {
  t.test(`${mode}: the proxy bounds the streams one connection can hold open`, async (t) => {
    const { url } = await countingUpstream(t)
    const port = await proxyPort(t, mode, url)
    t.equal(await advertised(await h2Session(t, mode, port), BOUND), BOUND, 'the first connection, by a SETTINGS update')
    const second = await h2Session(t, mode, port)
    await within(5000, once(second, 'remoteSettings'), 'the server\'s SETTINGS')
    t.equal(second.remoteSettings.maxConcurrentStreams, BOUND, 'the next ones, from their first SETTINGS')
  })
}

t.test(`h2c: ${BURST} streams opened at once and then reset cost at most ${BOUND} upstream connections, twice over`, async (t) => {
  const { url, counts } = await countingUpstream(t)
  const port = await proxyPort(t, 'h2c', url)
  const session = await h2Session(t, 'h2c', port)
  t.equal(await advertised(session, BOUND), BOUND)
  for (const round of [1, 2]) {
    const before = counts.connections
    await burst(t, port, BURST)
    const opened = await within(10_000, settled(() => counts.connections), 'the upstream connections settling') - before
    t.ok(opened <= BOUND, `burst ${round}: ${opened} upstream connections for ${BURST} reset streams (at most ${BOUND})`)
  }
  t.ok(counts.requests <= 2 * BOUND, `${counts.requests} upstream requests written (at most one per accepted stream)`)
  // The process is alive and serves: an answer through the proxy after the bursts.
  const after = await within(5000, h2Request(session, '/after').done, 'an answer after the bursts')
  t.equal(after.status, 200)
  t.equal(after.body, 'ok')
})

const RESET_BURSTS = 4
const RESET_BURST = 200

t.test(`h2c: ${RESET_BURSTS} bursts of ${RESET_BURST} streams opened and reset in the same write, on one connection, cost at most ${CONNECTS_IN_FLIGHT} upstream connects in all, reused after`, async (t) => {
  const { url, counts } = await countingUpstream(t)
  const port = await proxyPort(t, 'h2c', url, undefined, 60_000)
  const h2 = await rawH2(t, port)
  for (let round = 0; round < RESET_BURSTS; round++) {
    await resetBurst(h2, 1 + 2 * RESET_BURST * round, RESET_BURST)
    const opened = await within(10_000, settled(() => counts.connections), 'the upstream connections settling')
    t.ok(opened <= CONNECTS_IN_FLIGHT, `after burst ${round + 1}: ${opened} upstream connections in all (at most ${CONNECTS_IN_FLIGHT})`)
  }
  t.notOk(h2.frames.some(f => f.type === GOAWAY), 'the connection was never refused (the bursts stay under nghttp2\'s own reset limit)')
  t.equal(counts.requests, 0, 'not one request written upstream for a stream reset in the write that opened it')
  t.equal(counts.closed, 0, 'no upstream connection closed: each stays usable')
  const opened = counts.connections
  t.ok(opened > 0, `the first burst did connect (${opened}): the bound, not an early refusal, is what is measured`)
  const after = await within(5000, h2Request(await h2Session(t, 'h2c', port), '/after').done, 'an answer after the bursts')
  t.equal(after.status, 200)
  t.equal(after.body, 'ok')
  t.equal(counts.requests, 1, 'the request after reached the upstream')
  t.equal(counts.connections, opened, 'over a connection the bursts opened: no new connect')
})

t.test('an app\'s own maxConcurrentStreams is kept', async (t) => {
  const { url } = await countingUpstream(t)
  const port = await proxyPort(t, 'h2c', url, { maxConcurrentStreams: 7 })
  const session = await h2Session(t, 'h2c', port)
  await within(5000, once(session, 'remoteSettings'), 'the server\'s SETTINGS')
  t.equal(session.remoteSettings.maxConcurrentStreams, 7)
})
