// Load runs against HTTP servers: one autocannon run, rounds of them interleaved across variants,
// and the joining of several processes' rounds into one result per variant.
import autocannon from 'autocannon'
import { settings } from './settings.js'
import { processCpuMs } from './sampling.js'
import { median } from './stats.js'

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

/** A variant's result from its runs: the median of each figure, and every failure counted. */
function summarize (name, runs) {
  return {
    name,
    rps: median(runs.map((run) => run.rps)),
    p99: median(runs.map((run) => run.p99)),
    cpuPerRequest: median(runs.map((run) => run.cpuPerRequest ?? 0)),
    failures: runs.reduce((sum, run) => sum + run.failures, 0)
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
    return { ...summarize(variant.name, list), rounds: list.map((run) => run.rps), runs: list }
  })
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
    return { ...summarize(name, runs), runs }
  })
}
