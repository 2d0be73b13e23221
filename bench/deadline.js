// Deadline bench: hello-world requests/s and p99 with and without the deadline plugin, as a ratio
// from one interleaved run (goal >= 0.95). With --cpu-prof, also profiles the plugin's server and
// lists the plugin's hottest functions.
import { settings, startServer, stopServer, interleavedLoad, ratio, printTable, format } from './helpers.js'
import { profileServer } from './cpu-profile.js'

export default async function deadlineBench ({ cpuProf = false } = {}) {
  const plain = await startServer('server-hello.js', { MODE: 'plain' })
  const withDeadline = await startServer('server-hello.js', { MODE: 'deadline' })
  let results
  try {
    results = await interleavedLoad([
      { name: 'fastify', url: plain.url, pid: plain.pid },
      { name: 'fastify + deadline', url: withDeadline.url, pid: withDeadline.pid }
    ])
  } finally {
    await stopServer(plain)
    await stopServer(withDeadline)
  }
  const [base, measured] = results
  printTable(`deadline: hello world, ${settings.connections} connections, median of ${settings.rounds} x ${settings.seconds} s`,
    ['server', 'req/s', 'p99', 'ratio', 'server CPU/request', 'CPU ratio', 'rounds (req/s)', 'failures'],
    results.map((r) => [r.name, format.int(r.rps), format.ms(r.p99), format.ratio(ratio(r, base)),
      format.us(r.cpuPerRequest), format.ratio(ratio(r, base, 'cpuPerRequest', true)), r.rounds.map(format.int).join(' / '), r.failures]))
  console.log(`with/without deadline: req/s ratio ${format.ratio(ratio(measured, base))}, ` +
    `CPU-per-request ratio (without/with) ${format.ratio(ratio(measured, base, 'cpuPerRequest', true))} (goal >= 0.95)`)
  if (cpuProf) {
    await profileServer('server-hello.js', { MODE: 'deadline' }, '/', 'dist/plugins/deadline/', 'deadline plugin')
  }
}
