// Streams bench: what many and long streams cost each proxy (this project as an ingress runs it,
// deadline + proxy; @fastify/http-proxy; nginx; Caddy), each in a fresh process so its memory
// belongs to one scenario:
// - SSE fan-out: BENCH_FANOUT_STREAMS (2,000) event streams open at once: how many got their first
//   event, the p99 delay (upstream write -> client receipt) and what it adds over direct streams
//   open in the same seconds, the proxy's CPU time per event and its RSS per open stream;
// - a BENCH_UPLOAD_MIB (1,024) MiB upload streamed to the upstream: MiB/s and peak RSS growth;
// - BENCH_SLOW_READERS (50) clients downloading BENCH_SLOW_MIB (64) MiB each but reading slowly,
//   for BENCH_SLOW_SECONDS (10): the proxy's peak RSS growth, which backpressure keeps bounded.
// The client side is this one process with plain node:http requests and net sockets, cheap
// enough to share core 0 with the upstream.
import { readFileSync } from 'node:fs'
import { request } from 'node:http'
import { connect } from 'node:net'
import { Readable, pipeline } from 'node:stream'
import { settings } from './lib/settings.js'
import { startServer, stopServer, ask } from './lib/children.js'
import { processMemory, processCpuMs, sampleRss } from './lib/sampling.js'
import { percentile } from './lib/stats.js'
import { nowMs, wait } from './lib/time.js'
import { format } from './lib/format.js'
import { addGoal } from './lib/report-state.js'
import { printTable } from './lib/tables.js'
import { withProxies } from './proxy.js'

const PROXIES = ['streamline-deadline', 'http-proxy', 'nginx', 'caddy']
const OURS = 'streamline-deadline'
// One event a second per stream: 2,000 events/s through the proxy at the default stream count,
// each stream on its own phase so the events are spread evenly over the second, as independent
// clients' streams are (a broadcast to all at once would measure the burst, not the proxy).
const EVENT_EVERY_MS = 1000
// Streams opened straight to the upstream beside each proxy's, for the direct delay of the same seconds.
const CONTROL_STREAMS = 200
// How long a stream may take to bring its first event once all are open, beyond its phase.
const FIRST_EVENT_GRACE_MS = 3000
// A slow reader takes at most this much every tick: about 160 KiB/s each.
const SLOW_READ_BYTES = 16 * 1024
const SLOW_TICK_MS = 100
// A proxy whose RSS grows past this while the slow readers read is stopped early: without
// backpressure 50 x 64 MiB would be buffered, more than this machine should be asked to hold.
const SLOW_RSS_LIMIT = 1024 * 1048576
const chunk = Buffer.alloc(64 * 1024, 'u')

export default async function streamsBench () {
  const upstream = await startServer('server-upstream.js')
  try {
    await fanout(upstream)
    await uploads(upstream)
    await slowReaders(upstream)
  } finally {
    await stopServer(upstream)
  }
}

/** Runs fn(server) with a fresh proxy of `mode` (started with --expose-gc), or returns null if it was skipped. */
function withProxy (upstream, mode, fn) {
  return withProxies(upstream, [mode], ([server]) => (server ? fn(server) : null), {}, ['--expose-gc'])
}

/** RSS (and heap for node) of a proxy: after a forced GC for node, as it stands for nginx / Caddy. */
async function memoryOf (server) {
  if (server.external) return { rss: processMemory(server.pid).rss, heapUsed: NaN, arrayBuffers: NaN }
  return ask(server, 'mem')
}

/** a / b for memory figures, or NaN when either is not above zero (a small count can shrink RSS). */
function memoryRatio (a, b) {
  return a > 0 && b > 0 ? a / b : NaN
}

const ratioText = (value) => (Number.isFinite(value) ? format.ratio(value) : '')

/** A GET whose body is read to the end; resolves when it has ended. */
function getAll (url) {
  return new Promise((resolve, reject) => {
    request(url, { agent: false }, (res) => {
      res.resume()
      res.on('end', resolve)
      res.on('error', reject)
    }).on('error', reject).end()
  })
}

/**
 * Destroys requests or sockets and waits until each has closed. Not events.once: it rejects on the
 * 'error' ("socket hang up") that destroying a request still waiting for its response emits.
 */
async function closeAll (streams) {
  await Promise.all(streams.map((stream) => {
    if (stream.closed) return null
    const closed = new Promise((resolve) => stream.once('close', resolve))
    stream.destroy()
    return closed
  }))
}

/**
 * Opens SSE stream `i` of `n` on `base` into `run`: counts it served at its first event and, while
 * run.recording, adds each event's delay (its receipt minus the upstream's write) to run.delays.
 * Resolves once the TCP connection is up (or failed): a proxy may queue the request for long.
 */
function openStream (base, i, n, run) {
  const phase = Math.floor((i * EVENT_EVERY_MS) / n)
  return new Promise((resolve) => {
    const req = request(`${base}/sse?n=1000000&every=${EVENT_EVERY_MS}&phase=${phase}`, { agent: false }, (res) => {
      if (res.statusCode !== 200) run.failures++
      let served = false
      let buffered = ''
      res.setEncoding('latin1')
      res.on('data', (text) => {
        const received = nowMs()
        buffered += text
        const events = buffered.split('\n\n')
        buffered = events.pop()
        for (const event of events) {
          if (!event.startsWith('data: ')) continue // a proxy's heartbeat comment
          if (!served) { served = true; run.served++ }
          if (run.recording) run.delays.push(received - Number(event.slice('data: '.length)))
        }
      })
      res.on('error', () => { run.failures++ }) // cut by the proxy (or by the close at the end, counted before)
    })
    req.on('error', () => { run.failures++; resolve() })
    req.once('socket', (socket) => socket.once('connect', resolve))
    req.end()
    run.requests.push(req)
  })
}

/** Opens `n` streams on `base` into a new run, in batches so the listen backlog never overflows. */
async function openStreams (base, n) {
  const run = { served: 0, failures: 0, delays: [], recording: false, requests: [] }
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => openStream(base, i + j, n, run)))
  }
  return run
}

/**
 * Opens settings.fanoutStreams streams through `base` and, given `controlBase` (the upstream),
 * CONTROL_STREAMS straight to it; waits for their first events; records event delays and the CPU
 * time of `pid` (the proxy, or the upstream for direct) per event for settings.fanoutSeconds; calls
 * `measure` (memory with every stream open) before closing them all. The control streams give the
 * direct delay of the same seconds, on a machine whose load moves from one target to the next.
 */
async function fanoutRun (base, pid, measure = async () => null, controlBase = null) {
  const n = settings.fanoutStreams
  const run = await openStreams(base, n)
  const control = controlBase ? await openStreams(controlBase, CONTROL_STREAMS) : await openStreams(base, 0)
  const firstBy = nowMs() + EVENT_EVERY_MS + FIRST_EVENT_GRACE_MS
  while (run.served + run.failures < n && nowMs() < firstBy) await wait(100)
  const served = run.served
  const cpuBefore = processCpuMs(pid)
  run.recording = control.recording = true
  await wait(settings.fanoutSeconds * 1000)
  run.recording = control.recording = false
  const cpuPerEvent = ((processCpuMs(pid) - cpuBefore) * 1000) / run.delays.length
  const memory = await measure()
  const failures = run.failures // before the close, whose destroyed requests count as errors too
  await closeAll([...run.requests, ...control.requests])
  return { served, failures, delays: run.delays, controlDelays: control.delays, cpuPerEvent, memory }
}

/**
 * Warns when the open-file limit (inherited by every child) is below what the fan-out needs: a
 * proxy holds two sockets per stream. Streams refused for it show up as failures, not as a crash.
 */
function checkFileLimit () {
  const needed = 2 * (settings.fanoutStreams + CONTROL_STREAMS) + 200
  const soft = Number(readFileSync('/proc/self/limits', 'utf8').match(/^Max open files\s+(\d+)/m)?.[1] ?? Infinity)
  if (soft < needed) console.log(`warning: ulimit -n is ${soft}, the SSE fan-out needs about ${needed}; streams beyond it will fail`)
}

async function fanout (upstream) {
  checkFileLimit()
  const rows = [['direct', await fanoutRun(upstream.url, upstream.pid)]]
  for (const mode of PROXIES) {
    const measured = await withProxy(upstream, mode, async (server) => {
      await getAll(`${server.url}/sse?n=3&every=1`) // warm the code paths before the baseline
      const before = await memoryOf(server)
      const result = await fanoutRun(server.url, server.pid, () => memoryOf(server), upstream.url)
      return { ...result, before }
    })
    if (measured) rows.push([mode, measured])
  }
  printFanout(rows)
}

function printFanout (rows) {
  const n = settings.fanoutStreams
  const p99 = new Map(rows.map(([name, r]) => [name, percentile(r.delays, 99)]))
  const directP99 = new Map(rows.map(([name, r]) => [name, percentile(r.controlDelays, 99)]))
  const added = (name) => p99.get(name) - directP99.get(name)
  const perStream = new Map(rows.filter(([, r]) => r.memory).map(([name, r]) => [name, (r.memory.rss - r.before.rss) / n]))
  printTable(`streams: SSE fan-out, ${n} streams open at once, 1 event/s each, delays over ${settings.fanoutSeconds} s ` +
    `(direct p99 meanwhile: ${CONTROL_STREAMS} streams straight to the upstream during the same seconds; CPU: the upstream ` +
    'for direct, else the proxy; RSS: node after a forced GC, nginx master + worker and Caddy as they stand)',
  ['path', 'served (first event)', 'failures', 'events', 'p50', 'p99', 'direct p99 meanwhile', 'p99 added over direct', 'CPU/event', 'proxy RSS before',
    'RSS with streams open', 'RSS per open stream', 'heap per open stream'],
  rows.map(([name, r]) => {
    const proxied = name !== 'direct'
    return [name, `${r.served} / ${n}`, r.failures, r.delays.length, format.ms(percentile(r.delays, 50)), format.ms(p99.get(name)),
      proxied ? format.ms(directP99.get(name)) : '', proxied ? `${added(name).toFixed(2)} ms` : '', format.us(r.cpuPerEvent), proxied ? format.mib(r.before.rss) : '',
      proxied ? format.mib(r.memory.rss) : '', proxied ? format.kib(perStream.get(name)) : '',
      proxied && Number.isFinite(r.before.heapUsed) ? format.kib((r.memory.heapUsed - r.before.heapUsed) / n) : '']
  }))
  // No ratio to http-proxy here, in the table or the chart: it serves 128 of the streams, so its
  // figures per open stream (and per event) are not those of the same work.
  const ours = rows.find(([name]) => name === OURS)?.[1]
  if (!ours) return
  const scenario = `SSE fan-out, ${n} streams`
  addGoal(scenario, 'every stream served (first event)', `${ours.served} / ${n}`, ours.served === n, `${n - ours.served} streams`)
  const kib = perStream.get(OURS) / 1024
  addGoal(scenario, '< 20 KiB proxy RSS per open stream', `${kib.toFixed(1)} KiB`, kib < 20, `${(kib - 20).toFixed(1)} KiB`)
  addGoal(scenario, 'p99 event delay added over direct < 2 ms', `${added(OURS).toFixed(2)} ms`, added(OURS) < 2, `${(added(OURS) - 2).toFixed(2)} ms`)
}

function * repeat (buffer, times) {
  for (let i = 0; i < times; i++) yield buffer
}

/**
 * POSTs settings.uploadMiB MiB (Content-Length, written with backpressure) to `base`/upload,
 * whose answer is the byte count the upstream read; `pid` (optional) is the proxy whose RSS is sampled.
 */
async function upload (base, pid) {
  const bytes = settings.uploadMiB * 1048576
  const before = pid === undefined ? 0 : processMemory(pid).rss
  const sampler = pid === undefined ? null : sampleRss(pid)
  const started = nowMs()
  const answer = await new Promise((resolve) => {
    const req = request(`${base}/upload`, {
      method: 'POST', agent: false, headers: { 'content-type': 'application/octet-stream', 'content-length': bytes }
    }, (res) => {
      let body = ''
      res.setEncoding('latin1')
      res.on('data', (text) => { body += text })
      res.on('end', () => resolve({ status: res.statusCode, body }))
      res.on('error', (err) => resolve({ status: err.code ?? err.message, body }))
    })
    req.on('error', (err) => resolve({ status: err.code ?? err.message, body: '' }))
    req.setTimeout(120_000, () => req.destroy(new Error(`no progress on ${base}/upload for 120 s`)))
    pipeline(Readable.from(repeat(chunk, bytes / chunk.length)), req, () => {})
  })
  const seconds = (nowMs() - started) / 1000
  const peak = sampler?.stop() ?? 0
  const counted = answer.status === 200 ? Number(answer.body) : 0
  return { ...answer, bytes, counted, mibPerSecond: counted / 1048576 / seconds, before, peak, hwm: pid === undefined ? 0 : processMemory(pid).peak }
}

async function uploads (upstream) {
  const rows = [['direct', await upload(upstream.url)]]
  for (const mode of PROXIES) {
    const measured = await withProxy(upstream, mode, (server) => upload(server.url, server.pid))
    if (measured) rows.push([mode, measured])
  }
  const speed = new Map(rows.map(([name, r]) => [name, r.mibPerSecond]))
  const growth = (r) => r.peak - r.before
  printTable(`streams: one ${settings.uploadMiB} MiB upload (POST, Content-Length) streamed to the upstream (nginx: master + worker)`,
    ['path', 'status', 'upstream counted', 'throughput', 'vs direct', 'vs http-proxy', 'proxy RSS before',
      'proxy peak RSS (sampled / VmHWM)', 'peak RSS growth'],
    rows.map(([name, r]) => [name, r.status, format.mib(r.counted), `${r.mibPerSecond.toFixed(0)} MiB/s`,
      format.ratio(r.mibPerSecond / speed.get('direct')), name === 'direct' ? '' : format.ratio(r.mibPerSecond / speed.get('http-proxy')),
      r.before ? format.mib(r.before) : '', r.peak ? `${format.mib(r.peak)} / ${format.mib(r.hwm)}` : '',
      r.peak ? format.mib(growth(r)) : '']))
  const ours = rows.find(([name]) => name === OURS)?.[1]
  if (!ours) return
  // the issue sets its goals on the download; the upload is held to the same ones
  const scenario = `${settings.uploadMiB} MiB upload`
  const vsDirect = ours.mibPerSecond / speed.get('direct')
  addGoal(scenario, '>= 0.5x direct MiB/s (the download\'s goal)', `${format.ratio(vsDirect)}x`, vsDirect >= 0.5, `${format.ratio(0.5 - vsDirect)}x`)
  const grown = growth(ours) / 1048576
  addGoal(scenario, 'proxy peak RSS growth < 32 MiB (the download\'s goal)', `${grown.toFixed(1)} MiB`, grown < 32, `${(grown - 32).toFixed(1)} MiB`)
}

/**
 * One reader of `url`/big on a raw socket that is never set flowing: the socket stops reading once
 * its buffer is full, the kernel's receive window closes, and the proxy has to hold back. Each
 * read() takes at most SLOW_READ_BYTES and counts the bytes; the first gives the status.
 */
function slowReader (url) {
  const { port, hostname } = new URL(url)
  const socket = connect(Number(port), hostname, () => {
    socket.write(`GET /big?mib=${settings.slowMiB} HTTP/1.1\r\nhost: ${hostname}\r\nconnection: close\r\n\r\n`)
  })
  socket.on('error', () => {})
  return {
    socket,
    status: '',
    bytes: 0,
    read () {
      const data = socket.read(SLOW_READ_BYTES) ?? socket.read()
      if (data === null) return
      if (this.status === '') this.status = data.subarray(9, 12).toString('latin1')
      this.bytes += data.length
    }
  }
}

/** Heap plus Buffer memory of a node proxy (NaN for nginx / Caddy). */
const retained = (memory) => memory.heapUsed + memory.arrayBuffers

/**
 * settings.slowReaders slow readers through `server` for settings.slowSeconds: the proxy's peak
 * RSS, and for node what it still holds after a forced GC with the readers open (garbage from
 * what already went through is in the peak, not in this).
 */
async function slowRun (server) {
  const before = await memoryOf(server)
  const sampler = sampleRss(server.pid)
  const readers = Array.from({ length: settings.slowReaders }, () => slowReader(server.url))
  const endAt = nowMs() + settings.slowSeconds * 1000
  let stoppedEarly = false
  while (nowMs() < endAt) {
    await wait(SLOW_TICK_MS)
    for (const reader of readers) reader.read()
    if (processMemory(server.pid).rss - before.rss > SLOW_RSS_LIMIT) {
      stoppedEarly = true
      break
    }
  }
  const peak = sampler.stop()
  const after = await memoryOf(server)
  await closeAll(readers.map((reader) => reader.socket))
  return {
    answered: readers.filter((reader) => reader.status === '200').length,
    bytes: readers.reduce((sum, reader) => sum + reader.bytes, 0),
    before: before.rss,
    peak,
    hwm: processMemory(server.pid).peak,
    retained: retained(after) - retained(before),
    stoppedEarly
  }
}

async function slowReaders (upstream) {
  const rows = []
  for (const mode of PROXIES) {
    const measured = await withProxy(upstream, mode, async (server) => {
      await getAll(`${server.url}/big?mib=1`) // warm the code paths before the baseline
      return slowRun(server)
    })
    if (measured) rows.push([mode, measured])
  }
  const n = settings.slowReaders
  const growth = new Map(rows.map(([name, r]) => [name, r.peak - r.before]))
  printTable(`streams: ${n} slow readers of a ${settings.slowMiB} MiB response each (at most ${SLOW_READ_BYTES / 1024} KiB ` +
    `per reader every ${SLOW_TICK_MS} ms), ${settings.slowSeconds} s per proxy (RSS before: node after a forced GC; nginx: master + worker)`,
  ['proxy', 'answered 200', 'read by all readers', 'proxy RSS before', 'proxy peak RSS (sampled / VmHWM)', 'peak RSS growth',
    'growth per reader', 'growth vs http-proxy (http-proxy / proxy)', 'heap + buffers held after GC, readers open'],
  rows.map(([name, r]) => [name, `${r.answered} / ${n}`, format.mib(r.bytes), format.mib(r.before),
    `${format.mib(r.peak)} / ${format.mib(r.hwm)}`, `${format.mib(growth.get(name))}${r.stoppedEarly ? ' (stopped early: over 1 GiB)' : ''}`,
    format.kib(growth.get(name) / n), ratioText(memoryRatio(growth.get('http-proxy'), growth.get(name))),
    Number.isFinite(r.retained) ? format.mib(r.retained) : '']))
  const ours = growth.get(OURS)
  if (ours === undefined) return
  // the issue asks for "bounded"; the figure it sets for one large download is the yardstick
  const grown = ours / 1048576
  addGoal(`${n} slow readers of ${settings.slowMiB} MiB`, 'proxy peak RSS growth < 32 MiB (the download\'s bound)', `${grown.toFixed(1)} MiB`,
    grown < 32, `${(grown - 32).toFixed(1)} MiB`)
}
