// What the proxy process holds, measured from outside (/proc/<pid>/fd), from the upstream's side
// (its open sockets) and from inside after a full GC (the child's 'stats'), and the comparison
// of two such snapshots.
import { readdirSync, readlinkSync } from 'node:fs'
import { ask } from '../bench/lib/children.js'
import { wait } from '../bench/lib/time.js'
import { format } from '../bench/lib/format.js'
import { within } from './clients.js'

/** Open file descriptors of `pid`, by kind ('socket', 'pipe', 'anon_inode:[eventpoll]', 'file'). */
export function fds (pid) {
  const kinds = {}
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target
    try {
      // sockets and pipes by kind; files (stdio, /dev/null) as 'file'
      target = readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/^(socket|pipe):\[\d+\]$/, '$1').replace(/^\/.*/, 'file')
    } catch { continue } // closed between the listing and the read
    kinds[target] = (kinds[target] ?? 0) + 1
  }
  return kinds
}

const total = (counts) => Object.values(counts).reduce((sum, n) => sum + n, 0)

/**
 * Waits until the proxy's pooled upstream connections have idled out and its descriptors have
 * stopped moving (or reached `targetFds`), bounded: a leak shows in the table, it does not hang.
 */
export async function settle (server, up, targetFds) {
  const until = Date.now() + 20_000
  let last = -1
  let steady = 0
  while (Date.now() < until) {
    const open = total(fds(server.pid))
    const done = up.connections() === 0 && (targetFds === undefined ? open === last : open <= targetFds)
    steady = done ? steady + 1 : 0
    if (steady >= 3) return
    last = open
    await wait(100)
  }
}

export async function snapshot (server, up) {
  const stats = await within(ask(server, 'stats'), 30_000, 'the proxy to answer "stats"')
  return { fds: fds(server.pid), upstream: up.connections(), ...stats }
}

const HEAP_TOLERANCE = 0.02

/** Rows [metric, before, after, allowed, verdict] and whether anything leaked. */
export function compare (before, after) {
  const rows = []
  let leaked = false
  const exact = (metric, a = 0, b = 0) => {
    const leak = b > a
    leaked ||= leak
    rows.push([metric, a, b, 'same', leak ? 'LEAK' : 'ok'])
  }
  exact('open file descriptors', total(before.fds), total(after.fds))
  for (const kind of union(before.fds, after.fds)) exact(`  fd: ${kind}`, before.fds[kind], after.fds[kind])
  exact('upstream connections (upstream side)', before.upstream, after.upstream)
  exact('client connections held by the proxy', before.connections, after.connections)
  exact('active resources', total(before.handles), total(after.handles))
  for (const kind of union(before.handles, after.handles)) exact(`  ${kind}`, before.handles[kind], after.handles[kind])
  // heapUsed is without V8's code spaces (see proxy-child.js), shown on the next line
  const growth = after.heapUsed / before.heapUsed - 1
  const heapLeak = growth > HEAP_TOLERANCE
  leaked ||= heapLeak
  rows.push(['heap used after GC (code spaces apart)', format.mib(before.heapUsed),
    `${format.mib(after.heapUsed)} (${growth >= 0 ? '+' : ''}${(growth * 100).toFixed(2)} %)`, `+${HEAP_TOLERANCE * 100} %`, heapLeak ? 'LEAK' : 'ok'])
  rows.push(['  V8 code spaces (shown only)', format.mib(before.codeBytes), format.mib(after.codeBytes), '', ''])
  return { rows, leaked, heapGrowth: growth }
}

function union (a, b) {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
}
