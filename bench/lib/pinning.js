// Which cores run what, planned once when the benches start, and the taskset calls that apply it.
import { execFileSync } from 'node:child_process'
import { availableParallelism } from 'node:os'

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

const pinning = planPinning()

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
