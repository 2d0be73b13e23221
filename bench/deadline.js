// Deadline bench: hello-world requests/s and server CPU per request with and without the deadline
// plugin, as ratios from one interleaved run (goal >= 0.95). The ratio is taken against an app that
// registers an empty plugin instead: Fastify runs an app with no plugin registered at all faster
// still (shown as 'bare'), and no app that could use the plugin is in that state. With --cpu-prof,
// also profiles the plugin's server and lists the plugin's hottest functions.
import { settings } from './lib/settings.js'
import { startServer, stopServer } from './lib/children.js'
import { interleavedLoad, mergeReplicas } from './lib/load.js'
import { ratio } from './lib/stats.js'
import { format } from './lib/format.js'
import { addGoal } from './lib/report-state.js'
import { printTable } from './lib/tables.js'
import { profileServer } from './cpu-profile.js'

const VARIANTS = [
  { name: 'fastify, bare', mode: 'bare' },
  { name: 'fastify + empty plugin', mode: 'baseline' },
  { name: 'fastify + deadline', mode: 'deadline' }
]

export default async function deadlineBench ({ cpuProf = false } = {}) {
  const servers = []
  let results
  try {
    for (let replica = 1; replica <= settings.replicas; replica++) {
      for (const { name, mode } of VARIANTS) {
        const server = await startServer('server-hello.js', { MODE: mode })
        servers.push({ ...server, name: `${name}#${replica}` })
      }
    }
    results = mergeReplicas(await interleavedLoad(servers))
  } finally {
    for (const server of servers) await stopServer(server)
  }
  const [, base, measured] = results
  printTable(`deadline: hello world, ${settings.connections} connections, ${settings.replicas} processes per server x ${settings.rounds} x ${settings.seconds} s, medians`,
    ['server', 'req/s', 'p99', 'ratio', 'server CPU/request', 'CPU ratio', 'failures'],
    results.map((r) => [r.name, format.int(r.rps), format.ms(r.p99), format.ratio(ratio(r, base)),
      format.us(r.cpuPerRequest), format.ratio(ratio(r, base, 'cpuPerRequest', true)), r.failures]))
  console.log(`with/without deadline: req/s ratio ${format.ratio(ratio(measured, base))}, ` +
    `CPU-per-request ratio (without/with) ${format.ratio(ratio(measured, base, 'cpuPerRequest', true))} (goal >= 0.95)`)
  const kept = ratio(measured, base)
  addGoal('deadline plugin on hello world', '>= 0.95x an app with an empty plugin (req/s)', `${format.ratio(kept)}x`, kept >= 0.95, `${format.ratio(0.95 - kept)}x`)
  if (cpuProf) {
    await profileServer('server-hello.js', { MODE: 'deadline' }, '/', 'dist/plugins/deadline/', 'deadline plugin')
  }
}
