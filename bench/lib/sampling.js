// Memory and CPU time of a server process (with its registered workers), read from /proc (Linux).
import { readFileSync } from 'node:fs'
import { workers } from './children.js'

/**
 * Resident set size and its peak (VmHWM) of a process and its registered workers, in bytes. The
 * peaks of several processes are summed: an upper bound of their joint peak.
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
 * CPU time (user + system, ms) a process has used (100 ticks/s). Unlike requests/s it barely
 * moves when other processes compete for the 2 cores.
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
