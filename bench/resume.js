// Resume bench (issue 22): event streams that survive an upstream restart. Two upstream replica
// processes (server-resume-upstream.js: the same event log, one event every EVERY_MS per stream,
// each naming the replica that sent it), an ingress process (server-resume-ingress.js: the proxy
// with `upstream: [A, B]` and `sseResume: true`), and BENCH_RESUME_STREAMS (1,000) client streams
// in this process, balanced over both replicas. Once every stream has had a few events, replica A
// is SIGKILLed: the streams it served are cut and the ingress carries each on from B with
// Last-Event-ID, in the same client response. After BENCH_RESUME_SECONDS (5) more, B stops
// writing and answers its log; A's log was written to a file just before its kill.
// Measured per stream that crossed the kill: the gap the client saw (from the last event before
// the cut to the first after it, less the normal interval), the first resumed event's delay after
// its due time, the ingress's own cut -> resumed head (`stream:resumed` gapMs); per stream, its
// delivered ids against what the replicas logged as sent: none missing, none repeated.
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { settings } from './lib/settings.js'
import { startServer, stopServer, ask } from './lib/children.js'
import { processCpuMs } from './lib/sampling.js'
import { percentile } from './lib/stats.js'
import { nowMs, wait } from './lib/time.js'
import { format } from './lib/format.js'
import { addGoal } from './lib/report-state.js'
import { printTable } from './lib/tables.js'
import { profileWindow } from './cpu-profile.js'

// 10 events/s per stream (10,000/s through the ingress at 1,000 streams): a gap shows at 100 ms
// resolution, and the load stays what this 2-core machine can carry next to the rest.
const EVERY_MS = 100
// Events every stream has before the kill.
const BEFORE_KILL = 3
// Bounds on the waits: for the streams' first events, for the last events logged at the end.
const OPEN_WITHIN_MS = 15_000
const SETTLE_WITHIN_MS = 3000
const GOAL_MS = 250
// The CPU figures' windows: the second before the kill, and the one from it.
const CPU_WINDOW_MS = 1000

export default async function resumeBench ({ cpuProf = false } = {}) {
  const logFile = join(tmpdir(), `streamline-resume-bench-${process.pid}.json`)
  const profileDir = cpuProf ? mkdtempSync(join(tmpdir(), 'streamline-prof-')) : null
  const replicas = []
  let ingress
  let measured
  try {
    replicas.push(await startServer('server-resume-upstream.js', { NAME: 'A', LOG_FILE: logFile }))
    replicas.push(await startServer('server-resume-upstream.js', { NAME: 'B' }))
    ingress = await startServer('server-resume-ingress.js', { UPSTREAM: replicas.map((r) => r.url).join(',') },
      profileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`])
    measured = await measure(ingress, replicas, logFile)
    report(measured)
  } finally {
    // stopped, not killed: a --cpu-prof ingress writes its profile as it exits
    if (ingress) await stopServer(ingress)
    for (const replica of replicas) await stopServer(replica)
    rmSync(logFile, { force: true })
    if (profileDir !== null && measured !== undefined) printProfile(profileDir, measured.killedAt)
    if (profileDir !== null) rmSync(profileDir, { recursive: true, force: true })
  }
}

/** With --cpu-prof: what the ingress was busy with in the second from the kill. */
function printProfile (profileDir, killedAt) {
  const file = readdirSync(profileDir).find((name) => name.endsWith('.cpuprofile'))
  const { busyMs, idleMs, functions } = profileWindow(join(profileDir, file), killedAt, killedAt + CPU_WINDOW_MS)
  printTable(`resume: the ingress under --cpu-prof, the ${CPU_WINDOW_MS} ms from the kill: busy ${busyMs.toFixed(0)} ms, idle ${idleMs.toFixed(0)} ms ` +
    '(a sample taken while the thread waited for a CPU counts as busy); hottest functions by self time',
  ['function', 'self', 'of busy'],
  functions.map((f) => [f.name, format.ms(f.selfMs), `${((f.selfMs / busyMs) * 100).toFixed(1)} %`]))
}

/** Parses the events of `text` (complete ones) into stream `s`; returns the partial rest. */
function take (s, text, at) {
  const events = text.split('\n\n')
  const rest = events.pop()
  for (const event of events) {
    if (event.startsWith(':')) continue // a heartbeat comment
    const [idLine, dataLine] = event.split('\n')
    const id = Number(idLine.slice('id: '.length))
    const [replica, due] = dataLine.slice('data: '.length).split(' ')
    if (s.replica !== '' && replica !== s.replica && s.switched === null) {
      s.switched = { interval: at - s.lastAt, at, late: at - Number(due) }
    }
    s.ids.push(id)
    s.replica = replica
    s.lastAt = at
  }
  return rest
}

/** Opens client stream `i` of `n` through `base`; resolves once it is connected (or failed). */
function openStream (base, i, n, run) {
  const s = { key: `s${i}`, ids: [], replica: '', lastAt: 0, switched: null, status: 0, endedEarly: false, req: null }
  run.streams.push(s)
  // each stream on its own phase, so the events are spread over the interval
  const t0 = nowMs() + (i * EVERY_MS) / n
  return new Promise((resolve) => {
    s.req = request(`${base}/events?stream=${s.key}&t0=${t0}&every=${EVERY_MS}`, { agent: false }, (res) => {
      s.status = res.statusCode
      let buffered = ''
      res.setEncoding('latin1')
      res.on('data', (text) => { buffered = take(s, buffered + text, nowMs()) })
      res.on('end', () => { if (!run.closing) s.endedEarly = true })
      res.on('error', () => { if (!run.closing) s.endedEarly = true })
    })
    s.req.on('error', () => { if (!run.closing) s.endedEarly = true; resolve() })
    s.req.once('socket', (socket) => socket.once('connect', resolve))
    s.req.end()
  })
}

async function until (condition, withinMs) {
  const by = nowMs() + withinMs
  while (!condition() && nowMs() < by) await wait(50)
  return condition()
}

/** Destroys every stream's request and waits until each has closed. */
async function closeAll (streams) {
  await Promise.all(streams.map(({ req }) => {
    if (req.closed) return null
    const closed = new Promise((resolve) => req.once('close', resolve))
    req.destroy()
    return closed
  }))
}

/** A process's CPU so far: all its threads (/proc stat), and its main thread's time on a CPU and waiting for one (schedstat). */
function cpuOf (pid) {
  const [ran, waited] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ').map((ns) => Number(ns) / 1e6)
  return { cpu: processCpuMs(pid), ran, waited }
}

function cpuDelta (after, before) {
  return { cpu: after.cpu - before.cpu, ran: after.ran - before.ran, waited: after.waited - before.waited }
}

/** Samples the ingress, B and this process (the clients) now; `since` gives the deltas from a previous sample. */
function sampleCpu (pids, since = null) {
  const now = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuOf(pid)]))
  if (since === null) return { now }
  return { now, deltas: Object.fromEntries(Object.entries(now).map(([name, after]) => [name, cpuDelta(after, since.now[name])])) }
}

/** SIGKILLs A (it writes its log first): returns the kill time on the shared clock, the signal and A's log. */
async function kill (victim, logFile) {
  const exited = once(victim.child, 'exit')
  victim.child.send({ type: 'die' })
  const [, signal] = await exited
  const { at, log } = JSON.parse(readFileSync(logFile, 'utf8'))
  return { killedAt: at, signal, victimLog: log }
}

async function measure (ingress, [victim, survivor], logFile) {
  const n = settings.resumeStreams
  const run = { streams: [], closing: false }
  for (let i = 0; i < n; i += 100) {
    await Promise.all(Array.from({ length: Math.min(100, n - i) }, (_, j) => openStream(ingress.url, i + j, n, run)))
  }
  const opened = await until(() => run.streams.every((s) => s.ids.length >= BEFORE_KILL || s.endedEarly), OPEN_WITHIN_MS)
  if (!opened) console.log(`resume: not every stream had ${BEFORE_KILL} events within ${OPEN_WITHIN_MS} ms; killing A anyway`)
  // the second before the kill, then the second from it: what each process ran, and waited for a CPU
  const pids = { ingress: ingress.pid, B: survivor.pid, clients: process.pid }
  const first = sampleCpu(pids)
  await wait(CPU_WINDOW_MS)
  const before = sampleCpu(pids, first)
  const onVictim = run.streams.filter((s) => s.replica === 'A').length
  const { killedAt, signal, victimLog } = await kill(victim, logFile)
  await wait(Math.max(0, killedAt + CPU_WINDOW_MS - nowMs()))
  const after = sampleCpu(pids, before)
  await wait(Math.max(0, killedAt + settings.resumeSeconds * 1000 - nowMs()))
  const { log: survivorLog } = await ask(survivor, 'freeze')
  const logged = loggedIds([...victimLog, ...survivorLog])
  // what B wrote before it stopped is still on its way: wait for it (bounded)
  const settled = await until(() => run.streams.every((s) => s.endedEarly || (s.ids.at(-1) ?? 0) >= (logged.get(s.key)?.last ?? 0)), SETTLE_WITHIN_MS)
  const resumed = await ask(ingress, 'resumed')
  run.closing = true
  await closeAll(run.streams)
  const resumeRequests = survivorLog.filter((entry) => entry.at > killedAt).map((entry) => entry.at)
  return { run, onVictim, signal, killedAt, logged, settled, resumed, resumeRequests, survivor, cpu: { before: before.deltas, after: after.deltas } }
}

/** stream key -> { ids: Set of the ids the replicas logged as written, last }. */
function loggedIds (entries) {
  const logged = new Map()
  for (const { stream, from, to } of entries) {
    let entry = logged.get(stream)
    if (entry === undefined) logged.set(stream, (entry = { ids: new Set(), last: 0 }))
    for (let id = from; id <= to; id++) entry.ids.add(id)
    entry.last = Math.max(entry.last, to)
  }
  return logged
}

/** One stream's delivered ids against the logged ones. */
function check (s, logged) {
  const sent = logged.get(s.key)?.ids ?? new Set()
  const seen = new Set(s.ids)
  let missing = 0
  for (const id of sent) if (!seen.has(id)) missing++
  let unlogged = 0
  for (const id of seen) if (!sent.has(id)) unlogged++
  let disorder = 0
  for (let i = 1; i < s.ids.length; i++) if (s.ids[i] !== s.ids[i - 1] + 1) disorder++
  return { missing, repeated: s.ids.length - seen.size, unlogged, disorder }
}

function row (name, values, note) {
  if (values.length === 0) return [name, 0, '', '', '', note]
  return [name, values.length, format.ms(percentile(values, 50)), format.ms(percentile(values, 99)), format.ms(Math.max(...values)), note]
}

/** A timeline row: when `times` (ms on the shared clock) happened after the kill. */
function after (name, times, killedAt) {
  const ms = times.map((t) => t - killedAt)
  if (ms.length === 0) return [name, 0, '', '', '', '']
  return [name, ms.length, format.ms(Math.min(...ms)), format.ms(percentile(ms, 50)), format.ms(percentile(ms, 99)), format.ms(Math.max(...ms))]
}

function printGaps ({ run, onVictim, signal, killedAt, resumed }, crossed, gaps) {
  const retried = resumed.attempts.filter((a) => a > 1).length
  printTable(`resume: ${run.streams.length} event streams through the ingress (sseResume: true, pool of 2 replica processes), one event every ` +
    `${EVERY_MS} ms each; replica A ${signal === 'SIGKILL' ? 'SIGKILLed' : `ended (${signal})`} once every stream had ${BEFORE_KILL} events; ${onVictim} streams were on it; ` +
    `${settings.resumeSeconds} s more, then B stopped and both replicas' logs were compared with what each client received`,
  ['measure', 'streams', 'p50', 'p99', 'max', ''],
  [row('client gap: last event before the cut -> first after, less the interval', gaps, `goal p99 < ${GOAL_MS} ms`),
    row('client: longest silence (that interval itself)', crossed.map((s) => s.switched.interval), `normal: ${EVERY_MS} ms`),
    row('client: first resumed event, after its due time', crossed.map((s) => s.switched.late), 'normal: about 1 ms'),
    row('client: kill -> first resumed event', crossed.map((s) => s.switched.at - killedAt), ''),
    row('ingress: cut -> resumed head (stream:resumed gapMs)', resumed.gaps, `resumed by a 2nd or later attempt: ${retried}`)])
}

function printTimeline ({ killedAt, resumed, resumeRequests }, crossed) {
  printTable('resume: timeline of the cut streams, ms after the kill (the machine\'s monotonic clock, shared by every process; ' +
    'connects: undici:client:beforeConnect in the ingress; resume requests do not wait behind its connect gate)',
  ['step', 'streams', 'first', 'p50', 'p99', 'last'],
  [after('ingress: upstream response cut (resumed head - gapMs)', resumed.heads.map((at, i) => at - resumed.gaps[i]), killedAt),
    after('ingress: connect to B started', resumed.connects.filter((at) => at > killedAt), killedAt),
    after('B: resume request received', resumeRequests, killedAt),
    after('ingress: resumed head (stream:resumed)', resumed.heads, killedAt),
    after('client: first resumed event', crossed.map((s) => s.switched.at), killedAt)])
}

function printCpu ({ cpu }) {
  const windows = [['1 s before the kill', cpu.before], ['1 s from the kill', cpu.after]]
  printTable('resume: CPU time of each process (all threads, /proc/<pid>/stat) and of its main thread: on a CPU, and runnable but ' +
    'waiting for one (/proc/<pid>/schedstat); pinned as above, on a machine others share',
  ['process', 'window', 'CPU', 'main thread on a CPU', 'main thread waiting for a CPU'],
  ['ingress', 'B', 'clients'].flatMap((name) => windows.map(([window, deltas]) => {
    const d = deltas[name]
    return [name === 'clients' ? 'clients (this process)' : name, window, `${d.cpu.toFixed(0)} ms`, `${d.ran.toFixed(0)} ms`, `${d.waited.toFixed(0)} ms`]
  })))
}

function printDelivered ({ run, onVictim, settled, resumed, survivor }, crossed, checks) {
  const sum = (field) => checks.reduce((total, c) => total + c[field], 0)
  const streamsWith = (field) => checks.filter((c) => c[field] > 0).length
  const ends = Object.entries(resumed.ends).map(([cause, count]) => `${cause} ${count}`).join(', ') || 'none'
  const toB = resumed.upstreams.filter((origin) => origin === survivor.url).length
  printTable('resume: delivered events against the replicas\' logs (per stream: every id either replica wrote, ' +
    `the events cut short by the kill included)${settled ? '' : '; warning: some streams had not received all that B wrote'}`,
  ['streams', 'on A at the kill', 'resumed (switched to B)', 'stream:resumed (to B)', 'events delivered', 'missing ids (streams)',
    'repeated ids (streams)', 'ids not logged', 'out of order', 'ended early', 'non-200', 'stream:end before the close'],
  [[run.streams.length, onVictim, crossed.length, `${resumed.gaps.length} (${toB})`, format.int(run.streams.reduce((total, s) => total + s.ids.length, 0)),
    `${sum('missing')} (${streamsWith('missing')})`, `${sum('repeated')} (${streamsWith('repeated')})`, sum('unlogged'), sum('disorder'),
    run.streams.filter((s) => s.endedEarly).length, run.streams.filter((s) => s.status !== 200).length, ends]])
}

function report (measured) {
  const { run, logged } = measured
  const crossed = run.streams.filter((s) => s.switched !== null)
  const checks = run.streams.map((s) => check(s, logged))
  const gaps = crossed.map((s) => Math.max(0, s.switched.interval - EVERY_MS))
  printGaps(measured, crossed, gaps)
  printTimeline(measured, crossed)
  printCpu(measured)
  printDelivered(measured, crossed, checks)
  const scenario = `issue 22: ${run.streams.length} resumed event streams, 2 replicas, one SIGKILLed`
  const p99 = gaps.length > 0 ? percentile(gaps, 99) : NaN
  addGoal(scenario, `p99 client gap < ${GOAL_MS} ms (beyond the ${EVERY_MS} ms interval)`, gaps.length > 0 ? format.ms(p99) : 'no stream resumed',
    p99 < GOAL_MS, Number.isFinite(p99) ? format.ms(p99 - GOAL_MS) : 'no stream resumed')
  const missing = checks.reduce((total, c) => total + c.missing, 0)
  const repeated = checks.reduce((total, c) => total + c.repeated, 0)
  addGoal(scenario, '0 missing, 0 repeated event ids', `${missing} missing, ${repeated} repeated`, missing + repeated === 0 && crossed.length > 0,
    crossed.length > 0 ? `${missing + repeated} ids` : 'no stream resumed')
}
