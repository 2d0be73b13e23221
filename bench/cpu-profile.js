// Reads a V8 .cpuprofile (written by `node --cpu-prof`) and sums self and total time per function,
// so a bench can name the hot functions of one part of the code (e.g. dist/plugins/deadline/).
import { readFileSync } from 'node:fs'

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

/** Total time under matched frames, counting only the outermost matched frame of each stack. */
function outermostTotal (profile, byId, totalOf, match) {
  let sum = 0
  const walk = (node) => {
    if (match(node.callFrame.url)) { sum += totalOf(node); return }
    for (const id of node.children ?? []) walk(byId.get(id))
  }
  walk(profile.nodes[0])
  return sum
}

/**
 * Functions ranked by self time. `match(url)` picks the functions to report; each gets its self
 * time and its total time (self + callees, e.g. AbortController or timer internals it calls).
 */
export function summariseProfile (path, match, top = 12) {
  const profile = JSON.parse(readFileSync(path, 'utf8'))
  const self = selfTimes(profile)
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const totalOf = (node) => (self.get(node.id) ?? 0) + (node.children ?? []).reduce((sum, id) => sum + totalOf(byId.get(id)), 0)
  const sampledMs = [...self.values()].reduce((a, b) => a + b, 0)
  const idleMs = profile.nodes.filter((n) => n.callFrame.functionName === '(idle)').reduce((sum, n) => sum + (self.get(n.id) ?? 0), 0)

  const functions = new Map()
  for (const node of profile.nodes) {
    if (!match(node.callFrame.url)) continue
    const key = frameKey(node)
    const entry = functions.get(key) ?? { name: key, selfMs: 0, totalMs: 0 }
    entry.selfMs += self.get(node.id) ?? 0
    entry.totalMs += totalOf(node)
    functions.set(key, entry)
  }
  const ranked = [...functions.values()].sort((a, b) => b.selfMs - a.selfMs)
  return {
    busyMs: sampledMs - idleMs,
    matchedSelfMs: ranked.reduce((sum, f) => sum + f.selfMs, 0),
    matchedTotalMs: outermostTotal(profile, byId, totalOf, match),
    functions: ranked.slice(0, top)
  }
}
