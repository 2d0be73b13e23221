// Pools bench (issue 20): what an upstream pool costs and how it behaves under load.
// 1. Cost: a small GET through this proxy with `upstream: [3 replica URLs]` against the same GET
//    with `upstream: oneUrl` (req/s, proxy CPU per request, ratios; interleaved rounds, two proxy
//    processes per variant as in the deadline bench). The replicas are one upstream process
//    listening on 3 ports, the single URL one of those ports: both variants then hit the very same
//    upstream process (same event loop, same JIT state, same core), so the only difference is
//    the proxy's side: the balancer, three origins' connection pools instead of one.
// 2. Spread: 100,000 requests (BENCH_SPREAD_REQUESTS) through a pool of those 3 ports, equal
//    weights, least-request (the default) and round-robin; the upstream counts the requests each
//    port received; max/min per replica.
// 3. Failover: a pool of 3 upstream processes (one each, so one can die), retries on (the pool's
//    default), outlier detection at its defaults; under a BENCH_FAILOVER_SECONDS load run one
//    replica is SIGKILLed a third of the way in: failed requests, and the latency before the kill,
//    in the second after it (the failover window) and after, with the time the pool took to
//    eject the dead replica (from the `fastify-streamline:upstream:ejected` channel).
// With --cpu-prof, also profiles the pool proxy on the small GET: its pool files, and the whole
// proxy plugin next to the single-URL proxy's.
import { once } from 'node:events'
import autocannon from 'autocannon'
import { settings } from './lib/settings.js'
import { startServer, stopServer, ask } from './lib/children.js'
import { interleavedLoad, mergeReplicas } from './lib/load.js'
import { percentile, ratio } from './lib/stats.js'
import { nowMs } from './lib/time.js'
import { format } from './lib/format.js'
import { addGoal } from './lib/report-state.js'
import { printTable } from './lib/tables.js'
import { profileServer } from './cpu-profile.js'

const REPLICAS = 3
const ONE = 'one upstream URL'
const POOL = `pool of ${REPLICAS} replicas`
// The failover window: responses that completed this long after the kill.
const WINDOW_MS = 1000
// The pool's own files, for the profile.
const POOL_FILES = /dist\/plugins\/proxy\/upstream\/(pool|balance|replica|replica-attempt|dispatcher|outlier)\.js$/

export default async function poolsBench ({ cpuProf = false } = {}) {
  const upstream = await startServer('server-upstream.js', { PORTS: String(REPLICAS) })
  try {
    await poolCost(upstream)
    if (cpuProf) await profilePool(upstream)
    await spreads(upstream)
  } finally {
    await stopServer(upstream)
  }
  await failover()
}

async function poolCost (upstream) {
  const servers = []
  let results
  try {
    for (let replica = 1; replica <= settings.replicas; replica++) {
      for (const [name, urls] of [[ONE, [upstream.urls[0]]], [POOL, upstream.urls]]) {
        const server = await startServer('server-proxy.js', { MODE: 'streamline', UPSTREAM: urls.join(',') })
        servers.push({ ...server, name: `${name}#${replica}`, url: `${server.url}/small` })
      }
    }
    results = mergeReplicas(await interleavedLoad(servers))
  } finally {
    for (const server of servers) await stopServer(server)
  }
  const [one, pool] = results
  printTable(`pools: small GET, ${POOL} (one upstream process on ${REPLICAS} ports) vs ${ONE}, ${settings.connections} connections, ` +
    `${settings.replicas} proxy processes per variant x ${settings.rounds} x ${settings.seconds} s, medians`,
  ['proxy upstream', 'req/s', 'p99', 'req/s ratio', 'proxy CPU/request', 'CPU ratio (one / pool)', 'rounds', 'failures'],
  results.map((r) => [r.name, format.int(r.rps), format.ms(r.p99), format.ratio(ratio(r, one)), format.us(r.cpuPerRequest),
    format.ratio(ratio(r, one, 'cpuPerRequest', true)), r.runs.map((run) => format.int(run.rps)).join(' / '), r.failures]))
  const kept = ratio(pool, one)
  addGoal('issue 20: small GET through a pool of 3 replicas', '>= 0.97x the same GET to one upstream URL (req/s)', `${format.ratio(kept)}x`,
    kept >= 0.97, `${format.ratio(0.97 - kept)}x`)
}

async function profilePool (upstream) {
  const env = { MODE: 'streamline', UPSTREAM: upstream.urls.join(',') }
  await profileServer('server-proxy.js', env, '/small', POOL_FILES, `${POOL}: pool files`)
  await profileServer('server-proxy.js', env, '/small', 'dist/plugins/proxy/', `${POOL}: proxy plugin`)
  await profileServer('server-proxy.js', { ...env, UPSTREAM: upstream.urls[0] }, '/small', 'dist/plugins/proxy/', `${ONE}: proxy plugin`)
}

/** One autocannon run of exactly `amount` requests (or `duration` s); `onResponse(status, ms)` sees each. */
async function run (url, { amount, duration, onResponse }) {
  const instance = autocannon({ url, connections: settings.connections, ...(amount ? { amount } : { duration }) })
  if (onResponse) instance.on('response', (_client, status, _bytes, ms) => onResponse(status, ms))
  const result = await instance
  return { result, failures: result.errors + result.timeouts + result.non2xx }
}

/** Requests per replica over `settings.spreadRequests` requests through a fresh proxy balancing with `balance`. */
async function spread (upstream, balance) {
  const proxy = await startServer('server-proxy.js', { MODE: 'streamline', UPSTREAM: upstream.urls.join(','), BALANCE: balance })
  try {
    await ask(upstream, 'counts')
    const measured = await run(`${proxy.url}/small`, { amount: settings.spreadRequests })
    const { counts } = await ask(upstream, 'counts')
    return { balance, counts, measured, maxMin: Math.max(...counts) / Math.min(...counts) }
  } finally {
    await stopServer(proxy)
  }
}

async function spreads (upstream) {
  const rows = []
  for (const balance of ['least-request', 'round-robin']) rows.push(await spread(upstream, balance))
  printTable(`pools: spread over ${REPLICAS} replicas of equal weight (one upstream process on ${REPLICAS} ports), ` +
    `${format.int(settings.spreadRequests)} requests per policy, ${settings.connections} connections`,
  ['balance', 'requests received', 'per replica', 'max/min', 'min/max (1.00 = even)', 'req/s', 'failures'],
  rows.map((r) => [r.balance, format.int(r.counts.reduce((a, b) => a + b, 0)), r.counts.map(format.int).join(' / '),
    r.maxMin.toFixed(3), (1 / r.maxMin).toFixed(3), format.int(r.measured.result.requests.average), r.measured.failures]))
  for (const r of rows) {
    addGoal(`issue 20: ${format.int(settings.spreadRequests)} requests, 3 replicas of equal weight, ${r.balance}`, 'max/min requests per replica <= 1.1',
      r.maxMin.toFixed(3), r.maxMin <= 1.1, (r.maxMin - 1.1).toFixed(3))
  }
}

/** Latency figures of the responses that completed in [from, to) (ms on the shared clock). */
function windowOf (name, samples, from, to) {
  const inside = samples.filter((s) => s.at >= from && s.at < to)
  const ms = inside.map((s) => s.ms)
  const bad = inside.filter((s) => s.status < 200 || s.status > 299).length
  return [name, `${((to - from) / 1000).toFixed(1)} s`, format.int(inside.length), bad,
    ms.length ? format.ms(percentile(ms, 50)) : '', ms.length ? format.ms(percentile(ms, 99)) : '', ms.length ? format.ms(Math.max(...ms)) : '']
}

async function failover () {
  const upstreams = []
  let proxy
  try {
    for (let i = 0; i < REPLICAS; i++) upstreams.push(await startServer('server-upstream.js'))
    proxy = await startServer('server-proxy.js', { MODE: 'streamline', UPSTREAM: upstreams.map((u) => u.url).join(',') })
    const url = `${proxy.url}/small`
    await run(url, { duration: settings.warmupSeconds })
    const events = []
    proxy.child.on('message', (message) => { if (message.type === 'upstream') events.push(message) })
    const samples = []
    const started = nowMs()
    const victim = upstreams[0]
    let killedAt = 0
    const killer = setTimeout(() => {
      killedAt = nowMs()
      process.kill(victim.pid, 'SIGKILL')
    }, (settings.failoverSeconds * 1000) / 3)
    const measured = await run(url, { duration: settings.failoverSeconds, onResponse: (status, ms) => samples.push({ at: nowMs(), status, ms }) })
    clearTimeout(killer)
    const ended = nowMs()
    if (victim.child.exitCode === null && victim.child.signalCode === null) await once(victim.child, 'exit')
    reportFailover({ samples, events, measured, started, killedAt, ended, victim })
  } finally {
    if (proxy) await stopServer(proxy)
    for (const server of upstreams) await stopServer(server)
  }
}

function reportFailover ({ samples, events, measured, started, killedAt, ended, victim }) {
  const ejected = events.find((e) => e.event === 'upstreamEjected' && e.upstream === victim.url)
  const ejectedIn = ejected ? `${(ejected.at - killedAt).toFixed(1)} ms` : 'not ejected'
  printTable(`pools: one of ${REPLICAS} replica processes SIGKILLed ${((killedAt - started) / 1000).toFixed(1)} s into a ` +
    `${settings.failoverSeconds} s run, ${settings.connections} connections, retries 2 (default); ejected ${ejectedIn} after the kill; ` +
    `failed requests: ${measured.failures} (errors ${measured.result.errors}, timeouts ${measured.result.timeouts}, non-2xx ${measured.result.non2xx})`,
  ['window', 'length', 'responses', 'non-2xx', 'p50', 'p99', 'max'],
  [windowOf('before the kill', samples, started, killedAt),
    windowOf(`failover window (kill + ${WINDOW_MS} ms)`, samples, killedAt, killedAt + WINDOW_MS),
    windowOf('after the window', samples, killedAt + WINDOW_MS, ended)])
  addGoal('issue 20: a replica SIGKILLed under load (pool of 3, retries 2)', 'failed requests 0', String(measured.failures),
    measured.failures === 0, String(measured.failures))
}
