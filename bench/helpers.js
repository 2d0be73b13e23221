// Shared plumbing for the benches: settings from the environment, server children, load runs,
// memory sampling and table printing. Benches are plain ESM run by `node bench/run.js`; they are
// never part of the test suite and nothing here asserts a figure.
import { execFileSync, fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'

function envNumber (name, fallback) {
  const value = Number(process.env[name])
  return Number.isFinite(value) && value > 0 ? value : fallback
}

/** Every knob, with modest defaults so `npm run bench` stays within a few minutes on 2 cores. */
export const settings = {
  seconds: envNumber('BENCH_SECONDS', 3), // one measured autocannon / echo run
  warmupSeconds: envNumber('BENCH_WARMUP_SECONDS', 2),
  rounds: envNumber('BENCH_ROUNDS', 5), // interleaved rounds per variant; the median is reported
  replicas: envNumber('BENCH_REPLICAS', 2), // server processes per variant, where a bench uses them
  connections: envNumber('BENCH_CONNECTIONS', 50),
  sseEvents: envNumber('BENCH_SSE_EVENTS', 200),
  streamMiB: envNumber('BENCH_STREAM_MIB', 1024),
  wsClients: envNumber('BENCH_WS_CLIENTS', 50),
  wsTunnels: envNumber('BENCH_WS_TUNNELS', 2000),
  fanoutStreams: envNumber('BENCH_FANOUT_STREAMS', 2000), // SSE streams open at once (streams bench)
  fanoutSeconds: envNumber('BENCH_FANOUT_SECONDS', 5), // event delays recorded with all of them open
  uploadMiB: envNumber('BENCH_UPLOAD_MIB', 1024),
  slowReaders: envNumber('BENCH_SLOW_READERS', 50),
  slowMiB: envNumber('BENCH_SLOW_MIB', 64), // the response each slow reader asks for
  slowSeconds: envNumber('BENCH_SLOW_SECONDS', 10) // how long the slow readers read, per target
}

const benchDir = new URL('.', import.meta.url)
const children = new Set()

/** Whether taskset (util-linux) can be run: pinning needs it. */
function hasTaskset () {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/**
 * Which cores run what: the server under test (a proxy, or the app in the deadline bench) on one
 * core, the upstream and the load generator (this process) on the other, as the issue measures.
 * Without pinning the scheduler moves them around and two targets of one run get different shares
 * of the machine. BENCH_PIN=0 turns it off; BENCH_CPUS_SERVER / BENCH_CPUS_LOAD pick other cores.
 */
function planPinning () {
  const cores = availableParallelism()
  if (process.env.BENCH_PIN === '0') return { reason: 'BENCH_PIN=0' }
  if (cores < 2) return { reason: `only ${cores} core` }
  if (!hasTaskset()) return { reason: 'taskset (util-linux) not found' }
  return {
    server: process.env.BENCH_CPUS_SERVER ?? String(cores - 1),
    load: process.env.BENCH_CPUS_LOAD ?? (cores > 2 ? `0-${cores - 2}` : '0')
  }
}

export const pinning = planPinning()

/** One line saying how the processes were pinned, for the console and the results file. */
export function describePinning () {
  if (pinning.reason) return `no core pinning (${pinning.reason})`
  return `cores pinned with taskset: server under test (proxy / app / nginx / caddy) on CPU ${pinning.server}; ` +
    `upstream and load generator on CPU ${pinning.load}`
}

/** Pins every thread of a running process to the cores of `role` ('server' or 'load'). */
export function pin (pid, role) {
  if (pinning.reason) return
  execFileSync('taskset', ['-a', '-p', '-c', pinning[role], String(pid)], { stdio: 'ignore' })
}

/** The command that starts `argv` already pinned to `role`'s cores (its children inherit it). */
export function pinnedCommand (argv, role) {
  return pinning.reason ? argv : ['taskset', '-c', pinning[role], ...argv]
}

/** Adds a child process started elsewhere (nginx, caddy) to the ones killed on a crash. */
export function trackChild (child) {
  children.add(child)
  child.once('exit', () => children.delete(child))
}

// Worker processes of a server whose CPU and memory count as its own (nginx: master + worker).
const workersOf = new Map()

export function setWorkers (pid, workers) {
  workersOf.set(pid, workers)
}

export function workers (pid) {
  return workersOf.get(pid) ?? []
}

/**
 * Starts a server script of bench/ in its own process, so the load generator (this process) never
 * shares an event loop with the server under test. The child answers { type: 'ready', port }.
 */
export async function startServer (script, env = {}, execArgv = []) {
  const child = fork(new URL(script, benchDir), [], {
    env: { ...process.env, ...env },
    execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  trackChild(child)
  const [message] = await Promise.race([
    once(child, 'message'),
    once(child, 'exit').then(([code]) => { throw new Error(`${script} exited with ${code} before it was ready`) })
  ])
  pin(child.pid, script === 'server-upstream.js' ? 'load' : 'server')
  return { child, pid: child.pid, port: message.port, url: `http://127.0.0.1:${message.port}` }
}

/** Asks a server child to close (so a --cpu-prof child writes its profile), then kills it by PID. */
export async function stopServer (server) {
  const { child } = server
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.send({ type: 'stop' })
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

/** Last resort when a bench throws: kill every child still running, by PID. */
export function killAllServers () {
  for (const child of children) {
    for (const pid of [...workers(child.pid), child.pid]) {
      try { process.kill(pid, 'SIGKILL') } catch {}
    }
  }
}

/** Sends a request to a child and waits for the answer of the same type (e.g. 'mem'). */
export async function ask (server, type) {
  const answer = new Promise((resolve) => {
    const onMessage = (message) => {
      if (message.type !== type) return
      server.child.off('message', onMessage)
      resolve(message)
    }
    server.child.on('message', onMessage)
  })
  server.child.send({ type })
  return answer
}

/**
 * Resident set size and its peak (VmHWM) of a process and its registered workers, in bytes, from
 * /proc (Linux). The peaks of several processes are summed: an upper bound of their joint peak.
 */
export function processMemory (pid) {
  let rss = 0
  let peak = 0
  for (const one of [pid, ...workers(pid)]) {
    const status = readFileSync(`/proc/${one}/status`, 'utf8')
    const field = (name) => Number(status.match(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm'))[1]) * 1024
    rss += field('VmRSS')
    peak += field('VmHWM')
  }
  return { rss, peak }
}

/** Samples a child's RSS every `intervalMs` until stop() is called; returns the highest seen. */
export function sampleRss (pid, intervalMs = 20) {
  let max = processMemory(pid).rss
  const timer = setInterval(() => { max = Math.max(max, processMemory(pid).rss) }, intervalMs)
  return { stop () { clearInterval(timer); return Math.max(max, processMemory(pid).rss) } }
}

/**
 * CPU time (user + system, ms) a process has used, from /proc (Linux, 100 ticks/s). Unlike
 * requests/s it barely moves when other processes compete for the 2 cores.
 */
export function processCpuMs (pid) {
  let ms = 0
  for (const one of [pid, ...workers(pid)]) {
    // the fields after the command name, which is in parentheses and may hold spaces
    const fields = readFileSync(`/proc/${one}/stat`, 'utf8').split(') ')[1].split(' ')
    ms += (Number(fields[11]) + Number(fields[12])) * 10
  }
  return ms
}

/**
 * One bounded autocannon run: requests/s over the whole run, p99 latency (ms), failures, and,
 * given the server's pid, the server's CPU µs per request.
 */
export async function load (url, seconds = settings.seconds, pid = undefined) {
  const cpuBefore = pid === undefined ? 0 : processCpuMs(pid)
  const result = await autocannon({ url, connections: settings.connections, duration: seconds })
  const cpuMs = pid === undefined ? 0 : processCpuMs(pid) - cpuBefore
  return {
    rps: result.requests.total / result.duration,
    p99: result.latency.p99,
    cpuPerRequest: (cpuMs * 1000) / result.requests.total,
    failures: result.errors + result.timeouts + result.non2xx
  }
}

/**
 * Measures every variant ({ name, url, pid }) with `run(url, seconds, pid)` (default: autocannon)
 * `rounds` times, interleaved (ABC CBA ...) so slow drift on a shared machine hits all variants
 * alike, and reports each variant's median round.
 */
export async function interleavedLoad (variants, run = load, rounds = settings.rounds) {
  for (const variant of variants) await run(variant.url, settings.warmupSeconds, variant.pid)
  const runs = new Map(variants.map((variant) => [variant.name, []]))
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse()
    for (const variant of order) runs.get(variant.name).push(await run(variant.url, settings.seconds, variant.pid))
  }
  return variants.map((variant) => {
    const list = runs.get(variant.name)
    return {
      name: variant.name,
      rps: median(list.map((run) => run.rps)),
      p99: median(list.map((run) => run.p99)),
      cpuPerRequest: median(list.map((run) => run.cpuPerRequest ?? 0)),
      failures: list.reduce((sum, run) => sum + run.failures, 0),
      rounds: list.map((run) => run.rps),
      runs: list
    }
  })
}

/**
 * `result`'s `field` relative to `base`'s: the median of the per-round ratios. Both ran in the
 * same round, back to back, so a burst of load from other processes skews one round, not the
 * figure. For a cost (CPU per request) pass inverse, so that higher is better as for req/s.
 */
export function ratio (result, base, field = 'rps', inverse = false) {
  return median(result.runs.map((run, i) => {
    const value = run[field] / base.runs[i][field]
    return inverse ? 1 / value : value
  }))
}

/**
 * Joins the results of several processes of one variant (named `name#1`, `name#2`, ...) into one
 * result per variant. Two processes of the same server can differ by 10-20 % for their whole
 * life (V8 optimises each one its own way), which is as large as the costs being compared; the
 * rounds of every replica together, paired replica by replica, even that out.
 */
export function mergeReplicas (results) {
  const byName = new Map()
  for (const result of results) {
    const name = result.name.replace(/#\d+$/, '')
    byName.set(name, [...(byName.get(name) ?? []), result])
  }
  return [...byName].map(([name, replicas]) => {
    const runs = replicas.flatMap((replica) => replica.runs)
    return {
      name,
      rps: median(runs.map((run) => run.rps)),
      p99: median(runs.map((run) => run.p99)),
      cpuPerRequest: median(runs.map((run) => run.cpuPerRequest ?? 0)),
      failures: runs.reduce((sum, run) => sum + run.failures, 0),
      runs
    }
  })
}

export function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** The value at percentile `p` (0..100) of a list of numbers. */
export function percentile (values, p) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

export const wait = sleep

/** Monotonic clock shared by every process on the machine (CLOCK_MONOTONIC), in ms. */
export function nowMs () {
  return Number(process.hrtime.bigint()) / 1e6
}

export const format = {
  int: (n) => Math.round(n).toLocaleString('en-US'),
  us: (n) => `${n.toFixed(0)} µs`,
  ms: (n) => `${n.toFixed(n < 10 ? 2 : 1)} ms`,
  ratio: (n) => n.toFixed(2),
  mib: (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`,
  kib: (bytes) => `${(bytes / 1024).toFixed(1)} KiB`
}

/**
 * What bench/report.js writes at the end: every printed table, the goals with the figure
 * measured, bars (a target's ratio to @fastify/http-proxy in one scenario), and why a target was
 * skipped (name -> reason).
 */
export const report = { tables: [], goals: [], bars: [], skipped: new Map() }

/** A goal of the issue: `measured` as text, `met`, and when missed, by how much (`missedBy`). */
export function addGoal (scenario, goal, measured, met, missedBy = '') {
  report.goals.push({ scenario, goal, measured, met, missedBy })
}

/** Adds each proxied result's ratio to http-proxy of `field` to the chart, under `scenario`. */
export function addBars (scenario, results, value) {
  for (const result of results) {
    if (result.name === 'direct') continue
    const v = value(result)
    if (Number.isFinite(v)) report.bars.push({ scenario, target: result.name, value: v })
  }
}

/** Prints rows (arrays of strings) as an aligned text table under a title. */
export function printTable (title, header, rows) {
  report.tables.push({ title, header, rows: rows.map((row) => row.map(String)) })
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => String(row[i]).length)))
  const line = (row) => row.map((cell, i) => String(cell).padEnd(widths[i])).join('  ')
  console.log(`\n${title}\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}`)
  for (const row of rows) console.log(line(row))
}

/**
 * Prints a load comparison of 'direct' (the first result) and proxies, with ratios against
 * direct and against 'http-proxy'. `unit` names what was counted ('request', 'round trip').
 */
export function printProxyComparison (title, unit, results) {
  const [direct] = results
  const httpProxy = results.find((r) => r.name === 'http-proxy')
  printTable(`${title} (CPU: the upstream for direct, else the proxy process alone, nginx: master + worker)`,
    ['path', `${unit}s/s`, 'p99', 'vs direct', 'vs http-proxy', `CPU/${unit}`, 'CPU vs http-proxy', 'rounds', 'failures'],
    results.map((r) => {
      const proxied = r !== direct
      return [r.name, format.int(r.rps), format.ms(r.p99), format.ratio(ratio(r, direct)),
        proxied ? format.ratio(ratio(r, httpProxy)) : '', format.us(r.cpuPerRequest),
        proxied ? format.ratio(ratio(r, httpProxy, 'cpuPerRequest', true)) : '',
        r.rounds.map(format.int).join(' / '), r.failures]
    }))
}
