// `npm run soak`: SOAK_OPERATIONS (10,000) mixed failures (soak/operations.js) against ONE proxy
// process (soak/proxy-child.js: deadline + proxy, --expose-gc), SOAK_CONCURRENCY (50) at a time,
// after a warm-up of SOAK_WARMUP operations (a tenth, at least 300). Before and after, with the
// proxy idle: its open file descriptors, the upstream's open connections, the proxy's active
// resources and its heap after a full GC. Prints the comparison; exits 1 on a leak, on an
// unexpected outcome or if the proxy died. SOAK_JSON=1 adds one `SOAK_RESULT {...}` line (the CI
// test reads it). Build first: the proxy child imports the package from dist/.
import http from 'node:http'
import { startServer, stopServer, killAllServers } from '../bench/lib/children.js'
import { format } from '../bench/lib/format.js'
import { printTable } from '../bench/lib/tables.js'
import { startUpstream } from './upstream.js'
import { KINDS } from './operations.js'
import { closeLeftovers, within } from './clients.js'
import { settle, snapshot, compare } from './measure.js'
import { DRAIN_TIMEOUT, drainPhase } from './drain.js'

function envInteger (name, fallback) {
  const value = Number(process.env[name])
  return Number.isInteger(value) && value > 0 ? value : fallback
}

const operations = envInteger('SOAK_OPERATIONS', 10_000)
const settings = {
  operations,
  concurrency: envInteger('SOAK_CONCURRENCY', 50),
  warmup: envInteger('SOAK_WARMUP', Math.max(300, Math.round(operations / 10))),
  seed: envInteger('SOAK_SEED', 1)
}
const OPERATION_TIMEOUT = 20_000
// No operation starts after this: a proxy that stalls every request fails the run, it does not
// keep it going for OPERATION_TIMEOUT x operations / concurrency.
const BUDGET = 150_000
// The proxy runs interpreted: with the JIT on, V8 keeps optimizing functions long after any
// warm-up and its code's metadata (deoptimization data, relocation info: ~1.4 MiB, +8 %) lands
// in the old space with the objects. That growth is bounded (the same after 10,000 or 30,000
// operations) but hides a leak of a few hundred KB; interpreted, the heap holds objects alone.
// Bytecode is compiled once (the warm-up runs every path) and never flushed.
const CHILD_FLAGS = ['--expose-gc', '--no-opt', '--no-sparkplug', '--no-flush-bytecode']

/** `n` kind names in the proportions of their weights, shuffled by a seeded PRNG (mulberry32): a run can be replayed. */
function plan (n, seed) {
  const names = Object.keys(KINDS)
  const weights = names.reduce((sum, name) => sum + KINDS[name].weight, 0)
  const list = names.flatMap((name) => Array(Math.max(1, Math.round(n * KINDS[name].weight / weights))).fill(name))
  let state = seed >>> 0
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[list[i], list[j]] = [list[j], list[i]]
  }
  return list
}

/** Runs the plan with `concurrency` workers; per kind: how many ran, and the unexpected outcomes. */
async function runPlan (ctx, list, phase) {
  const results = Object.fromEntries(Object.keys(KINDS).map((name) => [name, { ran: 0, unexpected: 0, errors: {} }]))
  const mustNotReach = []
  let next = 0
  const stopAt = Date.now() + BUDGET
  const worker = async () => {
    while (next < list.length && Date.now() < stopAt) {
      const index = next++
      const name = list[index]
      const id = `${phase}-${index}`
      const result = results[name]
      result.ran++
      if (KINDS[name].neverUpstream) mustNotReach.push([name, id])
      try {
        await within(KINDS[name].run(ctx, id), OPERATION_TIMEOUT, `"${name}" ${id}`)
      } catch (err) {
        result.unexpected++
        result.errors[err.message] = (result.errors[err.message] ?? 0) + 1
      }
      ctx.up.forget(id)
    }
  }
  await Promise.all(Array.from({ length: ctx.concurrency }, worker))
  return { results, mustNotReach, skipped: list.length - next }
}

/** Ids that reached the upstream although their client left before the request could go there. */
function checkNeverReached (up, { results, mustNotReach }) {
  for (const [name, id] of mustNotReach) {
    if (!up.reached(id)) continue
    results[name].unexpected++
    const message = 'the upstream received a request whose client had already left'
    results[name].errors[message] = (results[name].errors[message] ?? 0) + 1
  }
}

/** One phase of traffic, then the proxy left idle: client connections closed, the pool idled out. */
async function phase (ctx, server, count, name, targetFds) {
  ctx.agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
  const outcome = await runPlan(ctx, plan(count, settings.seed + (name === 'soak' ? 1 : 0)), name)
  ctx.agent.destroy()
  const leftovers = closeLeftovers()
  if (leftovers > 0) console.log(`${name}: closed ${leftovers} client connections left open by failed operations`)
  await settle(server, ctx.up, targetFds)
  checkNeverReached(ctx.up, outcome)
  if (outcome.skipped > 0) console.log(`${name}: ${outcome.skipped} operations not started, over the ${BUDGET / 1000} s budget`)
  return { results: outcome.results, skipped: outcome.skipped }
}

function heldMessages (server) {
  const waiting = new Map()
  server.child.on('message', (message) => {
    if (message.type !== 'held') return
    waiting.get(message.id)?.()
    waiting.delete(message.id)
  })
  return (id) => new Promise((resolve) => waiting.set(id, resolve))
}

async function soak () {
  const up = await startUpstream()
  const server = await startServer('../soak/proxy-child.js', { UPSTREAM: up.url, DRAIN_TIMEOUT: String(DRAIN_TIMEOUT) }, CHILD_FLAGS)
  const ctx = { port: server.port, up, held: heldMessages(server), concurrency: settings.concurrency, agent: null }
  try {
    await phase(ctx, server, settings.warmup, 'warmup')
    const before = await snapshot(server, up)
    const started = Date.now()
    const { results, skipped } = await phase(ctx, server, settings.operations, 'soak')
    const seconds = (Date.now() - started) / 1000
    const alive = server.child.exitCode === null && server.child.signalCode === null
    const after = await snapshot(server, up)
    const drain = await drainPhase(ctx.port, server.child)
    return { before, after, results, seconds, alive, skipped, drain }
  } finally {
    await stopServer(server)
    await up.close()
  }
}

function report ({ before, after, results, seconds, alive, skipped, drain }) {
  const comparison = compare(before, after)
  const unexpected = Object.values(results).reduce((sum, r) => sum + r.unexpected, 0)
  printTable(`soak: ${format.int(settings.operations)} operations, ${settings.concurrency} at a time, in ${seconds.toFixed(1)} s`,
    ['operation', 'ran', 'unexpected', 'first unexpected outcome'],
    Object.entries(results).map(([name, r]) => [name, r.ran, r.unexpected, Object.keys(r.errors)[0] ?? '']))
  printTable('soak: the proxy process, idle, before and after (after GC)',
    ['metric', 'before', 'after', 'allowed', 'result'], comparison.rows)
  console.log(`\ndrain: app.close() with event streams, downloads and tunnels open took ${drain.ms} ms (drainTimeout ${DRAIN_TIMEOUT})${drain.failures.length > 0 ? `; FAILED: ${drain.failures.join('; ')}` : ''}`)
  const ok = !comparison.leaked && unexpected === 0 && alive && skipped === 0 && drain.failures.length === 0
  console.log(`\n${ok ? 'PASS' : 'FAIL'}: ${comparison.leaked ? 'a leak' : 'no leak'}, ${unexpected} unexpected outcomes, ${skipped} not run, proxy ${alive ? 'alive' : 'DEAD'}, drain ${drain.failures.length === 0 ? 'clean' : 'FAILED'}`)
  if (process.env.SOAK_JSON === '1') {
    console.log(`SOAK_RESULT ${JSON.stringify({ ok, alive, leaked: comparison.leaked, unexpected, skipped, seconds, before, after, heapGrowth: comparison.heapGrowth, results, drain })}`)
  }
  return ok
}

console.log(`node ${process.version}, ${JSON.stringify(settings)}`)
process.once('SIGINT', () => { killAllServers(); process.exit(130) })
try {
  process.exitCode = report(await soak()) ? 0 : 1
} catch (err) {
  killAllServers()
  throw err
}
