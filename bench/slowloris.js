// Slowloris against the example's ingress, by hand: `npm run build && node bench/slowloris.js`.
// 1,000 connections trickle a request head and 200 trickle a body (bench/slow-clients.js, in its
// own process: a piece every TRICKLE_MS, reconnecting when dropped, as an attacker would) while
// a healthy client measures its latency, on a new connection per request and on one keep-alive
// connection. Prints the healthy p50/p99 unloaded and under attack, when and how the slow ones
// were dropped, and the ingress's open file descriptors. Bounded (about 35 s with the defaults);
// asserts nothing. Env: SLOW_HEADS, SLOW_BODIES, TRICKLE_MS, MEASURE_SECONDS, and the example's
// HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, DEADLINE_TIMEOUT_MS (read by the ingress too);
// SETTLE_SECONDS (10) bounds the wait for descriptors to come back; DEBUG_FDS=1 lists leftovers.
import { execSync, fork } from 'node:child_process'
import { once } from 'node:events'
import { readdirSync } from 'node:fs'
import { Client } from 'undici'
import { killAllServers, startServer, stopServer } from './lib/children.js'
import { percentile } from './lib/stats.js'
import { wait } from './lib/time.js'
import { readConfig } from '../example-app/config.js'

const env = (name, fallback) => String(process.env[name] ?? fallback)
const attackEnv = { SLOW_HEADS: env('SLOW_HEADS', 1000), SLOW_BODIES: env('SLOW_BODIES', 200), TRICKLE_MS: env('TRICKLE_MS', 1000) }
const MEASURE_SECONDS = Number(env('MEASURE_SECONDS', 5))
const config = readConfig()

const fds = (pid) => readdirSync(`/proc/${pid}/fd`).length

/** Starts the slow clients in their own process; resolves once they are all connected. */
async function startAttack (port) {
  const child = fork(new URL('slow-clients.js', import.meta.url), [], {
    env: { ...process.env, ...attackEnv, PORT: String(port) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const [ready] = await once(child, 'message')
  return { child, open: ready.open }
}

/** Stops the slow clients; resolves with every drop they recorded. */
async function stopAttack (attack) {
  const exited = once(attack.child, 'exit')
  attack.child.send({ type: 'stop' })
  const [message] = await once(attack.child, 'message')
  await exited
  return message.drops
}

/** Sequential GET /small for `seconds`: alternately on a new connection and on a kept-alive one. */
async function healthy (url, seconds) {
  const kept = new Client(url, { pipelining: 1 })
  const latencies = { fresh: [], kept: [] }
  const stop = Date.now() + seconds * 1000
  while (Date.now() < stop) {
    for (const name of ['fresh', 'kept']) {
      const client = name === 'kept' ? kept : new Client(url, { pipelining: 1 })
      const start = performance.now()
      const { statusCode, body } = await client.request({ path: '/small', method: 'GET' })
      await body.text()
      if (statusCode !== 200) throw new Error(`healthy request got ${statusCode}`)
      latencies[name].push(performance.now() - start)
      if (client !== kept) await client.close()
    }
  }
  await kept.close()
  const figures = (list) => `p50 ${percentile(list, 50).toFixed(2)} ms, p99 ${percentile(list, 99).toFixed(2)} ms (${list.length} requests)`
  return {
    fresh: percentile(latencies.fresh, 99),
    kept: percentile(latencies.kept, 99),
    text: `new connection ${figures(latencies.fresh)}; keep-alive ${figures(latencies.kept)}`
  }
}

function dropSummary (drops, kind, label) {
  const list = drops.filter((d) => d.kind === kind)
  if (list.length === 0) return `${label}: none dropped`
  const after = list.map((d) => d.closedAt - d.connectedAt)
  const statuses = {}
  for (const d of list) statuses[d.status] = (statuses[d.status] ?? 0) + 1
  return `${label}: ${list.length} dropped (${list.filter((d) => d.byServer).length} by the server) after ` +
    `${Math.min(...after)}..${Math.max(...after)} ms (median ${percentile(after, 50)} ms); first status: ${JSON.stringify(statuses)}`
}

const upstream = await startServer('server-upstream.js')
const ingress = await startServer('server-ingress.js', { UPSTREAM: upstream.url })
try {
  console.log(`node ${process.version}; ${JSON.stringify(attackEnv)}; ingress ${JSON.stringify(config.server)}, deadline ${JSON.stringify(config.deadline)}`)
  await healthy(ingress.url, 2) // warm-up
  const fdsBefore = fds(ingress.pid)
  const unloaded = await healthy(ingress.url, MEASURE_SECONDS)
  console.log(`healthy, unloaded: ${unloaded.text}`)

  const started = Date.now()
  const attack = await startAttack(ingress.port)
  // The attacker's 'connect' comes before the ingress accepts: wait until it holds them all, or the
  // first healthy requests would time the kernel's accept queue rather than the ingress.
  const acceptBy = Date.now() + 10_000
  while (fds(ingress.pid) < fdsBefore + attack.open && Date.now() < acceptBy) await wait(20)
  const opened = Date.now()
  console.log(`${attack.open} slow connections open after ${opened - started} ms; ingress fds ${fdsBefore} -> ${fds(ingress.pid)}`)
  const loaded = await healthy(ingress.url, MEASURE_SECONDS)
  console.log(`healthy, under attack: ${loaded.text}`)
  console.log(`p99 under attack / unloaded: new connection ${(loaded.fresh / unloaded.fresh).toFixed(2)}x, keep-alive ${(loaded.kept / unloaded.kept).toFixed(2)}x`)

  // Keep the attack on until every first-wave head has met the header timeout (checked every
  // connectionsCheckingInterval), with a margin for a loaded machine, then stop it.
  const { headersTimeout, connectionsCheckingInterval } = config.server.http
  await wait(Math.max(0, opened + headersTimeout + connectionsCheckingInterval + 3000 - Date.now()))
  const fdsPeak = fds(ingress.pid)
  const drops = await stopAttack(attack)
  console.log(dropSummary(drops, 'head', 'slow heads'))
  console.log(dropSummary(drops, 'body', 'slow bodies'))
  const settleBy = Date.now() + Number(env('SETTLE_SECONDS', 10)) * 1000
  while (fds(ingress.pid) > fdsBefore + 2 && Date.now() < settleBy) await wait(50)
  console.log(`ingress fds: ${fdsBefore} before, ${fdsPeak} at the end of the attack, ${fds(ingress.pid)} after`)
  if (process.env.DEBUG_FDS) console.log(execSync(`ss -tanp | grep pid=${ingress.pid}, || true`).toString(), upstream.port)
} finally {
  await stopServer(ingress)
  await stopServer(upstream)
  killAllServers()
}
