// Reads a V8 .cpuprofile (written by `node --cpu-prof`) and sums self and total time per function,
// so a bench can name the hot functions of one part of the code (e.g. dist/plugins/deadline/).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startServer, stopServer } from './lib/children.js'
import { load } from './lib/load.js'
import { printTable } from './lib/tables.js'

/** Self ms per profile node id, from the sample list and its time deltas (µs). */
function selfTimes (profile) {
  const self = new Map()
  profile.samples.forEach((id, i) => {
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0) / 1000)
  })
  return self
}

function frameKey ({ callFrame }) {
  const file = callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/')
  return `${callFrame.functionName || '(anonymous)'} ${file}:${callFrame.lineNumber + 1}`
}

function addTo (map, key, selfMs, totalMs) {
  const entry = map.get(key) ?? { name: key, selfMs: 0, totalMs: 0 }
  entry.selfMs += selfMs
  entry.totalMs += totalMs
  map.set(key, entry)
}

const ranked = (map, top) => [...map.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top)

/**
 * Where the CPU goes in the code whose file `match(url)` accepts. For each of its functions:
 * self time, and total time = self + callees, where a callee inside node_modules is not counted
 * (that is the framework carrying on, e.g. a hook's `done()` running the rest of the request).
 * `callees` ranks the other functions (Node internals: timers, events, AbortController) by the
 * self time they spend under the matched code.
 */
export function summariseProfile (path, match, top = 12) {
  const profile = JSON.parse(readFileSync(path, 'utf8'))
  const self = selfTimes(profile)
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfOf = (node) => self.get(node.id) ?? 0
  const ownChildren = (node) => (node.children ?? []).map((id) => byId.get(id))
    .filter((child) => !child.callFrame.url.includes('/node_modules/'))
  const totalOf = (node) => selfOf(node) + ownChildren(node).reduce((sum, child) => sum + totalOf(child), 0)

  const functions = new Map()
  const callees = new Map()
  let matchedTotalMs = 0
  // Below a matched frame: attribute every own descendant's self time to the matched code.
  const under = (node) => {
    if (match(node.callFrame.url)) addTo(functions, frameKey(node), selfOf(node), totalOf(node))
    else addTo(callees, frameKey(node), selfOf(node), 0)
    for (const child of ownChildren(node)) under(child)
  }
  const walk = (node) => {
    if (!match(node.callFrame.url)) return (node.children ?? []).forEach((id) => walk(byId.get(id)))
    matchedTotalMs += totalOf(node)
    under(node)
    // the framework continuing below this frame may reach matched code again (another hook)
    for (const id of node.children ?? []) {
      if (byId.get(id).callFrame.url.includes('/node_modules/')) walk(byId.get(id))
    }
  }
  walk(profile.nodes[0])

  const sampledMs = [...self.values()].reduce((a, b) => a + b, 0)
  const idleMs = profile.nodes.filter((n) => n.callFrame.functionName === '(idle)').reduce((sum, n) => sum + selfOf(n), 0)
  const matchedFunctions = [...functions.values()]
  return {
    busyMs: sampledMs - idleMs,
    matchedSelfMs: matchedFunctions.reduce((sum, f) => sum + f.selfMs, 0),
    matchedTotalMs,
    functions: ranked(functions, top),
    callees: ranked(callees, top)
  }
}

/**
 * Runs a server script under `node --cpu-prof` for one load run on `path` and prints the hot
 * functions of the files under `dir` (e.g. 'dist/plugins/deadline/', or a RegExp of file URLs),
 * and what they call.
 * `run(url)` is the load: autocannon by default, the WebSocket bench passes its echo run.
 */
export async function profileServer (script, env, path, dir, label, run = load) {
  const profileDir = mkdtempSync(join(tmpdir(), 'streamline-prof-'))
  const server = await startServer(script, env, ['--cpu-prof', `--cpu-prof-dir=${profileDir}`])
  try {
    await run(`${server.url}${path}`)
  } finally {
    await stopServer(server)
  }
  const file = readdirSync(profileDir).find((name) => name.endsWith('.cpuprofile'))
  const match = typeof dir === 'string' ? (url) => url.includes(`/${dir}`) : (url) => dir.test(url)
  const summary = summariseProfile(join(profileDir, file), match)
  rmSync(profileDir, { recursive: true, force: true })
  const share = (ms) => `${((ms / summary.busyMs) * 100).toFixed(1)} %`
  printTable(`${label} under --cpu-prof: self ${share(summary.matchedSelfMs)}, total ${share(summary.matchedTotalMs)} of busy CPU`,
    ['function', 'self', 'total (with callees)'],
    summary.functions.map((f) => [f.name, share(f.selfMs), share(f.totalMs)]))
  printTable(`hottest functions called from the ${label} (self time under it)`,
    ['function', 'self'],
    summary.callees.filter((f) => f.selfMs > 0).map((f) => [f.name, share(f.selfMs)]))
}

/**
 * Self time per function of the samples a .cpuprofile took in [fromMs, toMs) of the machine's
 * monotonic clock (V8 stamps its profiles with the same clock, in µs): what a process was busy
 * with in a given second of a run (the resume bench: the second after a replica's kill).
 */
export function profileWindow (path, fromMs, toMs, top = 15) {
  const profile = JSON.parse(readFileSync(path, 'utf8'))
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const functions = new Map()
  let busyMs = 0
  let idleMs = 0
  let at = profile.startTime / 1000
  profile.samples.forEach((id, i) => {
    at += (profile.timeDeltas[i] ?? 0) / 1000
    if (at < fromMs || at >= toMs) return
    // a sample stands for the time until the next one
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000
    const node = byId.get(id)
    if (node.callFrame.functionName === '(idle)') {
      idleMs += ms
      return
    }
    busyMs += ms
    addTo(functions, frameKey(node), ms, 0)
  })
  return { busyMs, idleMs, functions: ranked(functions, top) }
}
