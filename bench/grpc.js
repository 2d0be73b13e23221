// gRPC bench (issue 21): what the ingress costs a gRPC client, against calling the server directly.
// Three processes: this one (the @grpc/grpc-js clients), the gRPC server (server-grpc-upstream.js)
// and the ingress (server-grpc-ingress.js: h2c, deadline + proxy with `http2: true`).
// 1. Unary calls/s, IN_FLIGHT calls at a time on one channel (one HTTP/2 connection to whichever
//    it calls), direct and through the ingress back to back in each of BENCH_ROUNDS rounds of
//    BENCH_SECONDS; ratio = median of the per-round ratios. Through the ingress every call in flight
//    has an upstream connection of its own (undici 7: docs/grpc.md), reused call after call.
// 2. Server-stream messages/s: STREAMS calls at once of a method that sends 64-byte messages as
//    fast as they are read, for BENCH_SECONDS, direct and through the ingress, same rounds.
// 3. Memory per open stream: BENCH_GRPC_STREAMS streams that send one message a second, opened
//    through a fresh ingress process; its RSS and heap (after a GC) before and with them all open, / N.
import { settings } from './lib/settings.js'
import { startServer, stopServer, ask } from './lib/children.js'
import { median, percentile, ratio } from './lib/stats.js'
import { format } from './lib/format.js'
import { processCpuMs } from './lib/sampling.js'
import { printTable } from './lib/tables.js'
import { BenchClient, grpc } from './lib/grpc-service.js'

const IN_FLIGHT = 16
const STREAMS = 4
// The ingress's HTTP/2 sessions take 100 streams each (docs/http2.md): the memory run spreads
// its streams over channels of this many, each its own connection.
const PER_CHANNEL = 50
const PROXIED = 'streamline-deadline'
const REQUEST = Buffer.from('hello')

export default async function grpcBench () {
  const upstream = await startServer('server-grpc-upstream.js')
  let ingress
  try {
    ingress = await startServer('server-grpc-ingress.js', { UPSTREAM: upstream.url }, ['--expose-gc'])
    // CPU per call: the gRPC server's for direct, the ingress's alone through it.
    const targets = [{ name: 'direct', port: upstream.port, pid: upstream.pid }, { name: PROXIED, port: ingress.port, pid: ingress.pid }]
    await throughput(targets)
  } finally {
    if (ingress) await stopServer(ingress)
  }
  try {
    await memory(upstream)
  } finally {
    await stopServer(upstream)
  }
}

const channel = (port) => new BenchClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 })

/** Unary calls completed in `ms`, IN_FLIGHT at a time; latencies in ms; CPU time of `pid` per call. */
async function unaryRun (client, ms, pid) {
  const cpuBefore = pid ? processCpuMs(pid) : 0
  const end = performance.now() + ms
  const latencies = []
  let failures = 0
  const call = () => new Promise((resolve) => {
    const started = performance.now()
    client.Unary(REQUEST, (err) => { if (err) failures++; else latencies.push(performance.now() - started); resolve() })
  })
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => { while (performance.now() < end) await call() }))
  const cpuPerCall = pid ? ((processCpuMs(pid) - cpuBefore) * 1000) / Math.max(1, latencies.length) : NaN
  return { rps: latencies.length / (ms / 1000), p99: percentile(latencies, 99), cpuPerCall, failures }
}

/** Messages received in `ms` over STREAMS flooding streams, then cancelled. */
async function streamRun (client, ms) {
  let messages = 0
  let failures = 0
  const calls = Array.from({ length: STREAMS }, () => {
    const call = client.Flood(REQUEST)
    call.on('data', () => { messages++ })
    call.on('error', (err) => { if (err.code !== grpc.status.CANCELLED) failures++ })
    return call
  })
  await new Promise((resolve) => setTimeout(resolve, ms))
  const counted = messages
  for (const call of calls) call.cancel()
  return { rps: counted / (ms / 1000), failures }
}

async function throughput (targets) {
  const clients = targets.map((target) => channel(target.port))
  const unary = targets.map((target) => ({ name: target.name, runs: [] }))
  const streams = targets.map((target) => ({ name: target.name, runs: [] }))
  try {
    for (const client of clients) {
      await unaryRun(client, settings.warmupSeconds * 500)
      await streamRun(client, settings.warmupSeconds * 500)
    }
    for (let round = 0; round < settings.rounds; round++) {
      // Alternate which goes first, so that neither always runs on a machine the other warmed.
      const order = round % 2 === 0 ? [0, 1] : [1, 0]
      for (const i of order) unary[i].runs[round] = await unaryRun(clients[i], settings.seconds * 1000, targets[i].pid)
      for (const i of order) streams[i].runs[round] = await streamRun(clients[i], settings.seconds * 1000)
    }
  } finally {
    for (const client of clients) client.close()
  }
  const [direct] = unary
  printTable(`grpc: unary calls/s, ${IN_FLIGHT} in flight on one channel, direct vs through the ingress (h2c, http2: true), ` +
    `${settings.rounds} x ${settings.seconds} s, medians`,
  ['path', 'calls/s', 'p99', 'ratio to direct', 'CPU/call (server or ingress)', 'rounds', 'failures'],
  unary.map((r) => [r.name, format.int(median(r.runs.map((run) => run.rps))), format.ms(median(r.runs.map((run) => run.p99))),
    format.ratio(ratio(r, direct)), format.us(median(r.runs.map((run) => run.cpuPerCall))), r.runs.map((run) => format.int(run.rps)).join(' / '), r.runs.reduce((sum, run) => sum + run.failures, 0)]))
  printTable(`grpc: server-stream messages/s, ${STREAMS} streams of 64-byte messages read as fast as they come, direct vs through the ingress, ` +
    `${settings.rounds} x ${settings.seconds} s, medians`,
  ['path', 'messages/s', 'ratio to direct', 'rounds', 'failures'],
  streams.map((r) => [r.name, format.int(median(r.runs.map((run) => run.rps))), format.ratio(ratio(r, streams[0])),
    r.runs.map((run) => format.int(run.rps)).join(' / '), r.runs.reduce((sum, run) => sum + run.failures, 0)]))
}

/** Opens `n` Tick streams through the ingress and resolves once each has had its first message. */
async function openStreams (port, n) {
  const clients = Array.from({ length: Math.ceil(n / PER_CHANNEL) }, () => channel(port))
  const calls = []
  let first = 0
  let failures = 0
  const all = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${first} of ${n} streams had a message after 60 s`)), 60_000)
    for (let i = 0; i < n; i++) {
      const call = clients[Math.floor(i / PER_CHANNEL)].Tick(REQUEST)
      let seen = false
      call.on('data', () => { if (!seen) { seen = true; if (++first === n) { clearTimeout(timer); resolve() } } })
      call.on('error', (err) => { if (err.code !== grpc.status.CANCELLED) failures++ })
      calls.push(call)
    }
  })
  const close = () => { for (const call of calls) call.cancel(); for (const client of clients) client.close() }
  try { await all } catch (err) { close(); throw err }
  return { close, failures: () => failures }
}

/** In a fresh ingress process: what the throughput runs left behind would blur the RSS. */
async function memory (upstream) {
  const ingress = await startServer('server-grpc-ingress.js', { UPSTREAM: upstream.url }, ['--expose-gc'])
  try {
    await measureMemory(ingress)
  } finally {
    await stopServer(ingress)
  }
}

async function measureMemory (ingress) {
  const n = settings.grpcStreams
  // One stream opened and closed first: the code paths are loaded before the baseline.
  const warm = await openStreams(ingress.port, 1)
  warm.close()
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const before = await ask(ingress, 'mem')
  const open = await openStreams(ingress.port, n)
  await new Promise((resolve) => setTimeout(resolve, 2000))
  const after = await ask(ingress, 'mem')
  open.close()
  printTable(`grpc: memory of ${n} open server streams through the ingress (one message a second each; ${Math.ceil(n / PER_CHANNEL)} client connections, ` +
    `${n} upstream connections: undici 7), ingress process after a GC`,
  ['proxy', 'RSS before', 'RSS with streams', 'RSS per stream', 'heap per stream', 'failures'],
  [[PROXIED, format.mib(before.rss), format.mib(after.rss), format.kib((after.rss - before.rss) / n), format.kib((after.heapUsed - before.heapUsed) / n), open.failures()]])
}
