// `npm run bench` runs every bench in sequence; `npm run bench -- proxy websocket` runs the named
// ones; `--cpu-prof` also profiles the deadline and proxy plugins, the WebSocket tunnel and the
// upstream pool, and the resume bench's ingress in the second after its replica's kill.
// Durations come from BENCH_* variables (see lib/settings.js); BENCH_NOTE adds a line to the results
// file (e.g. what else ran).
// Build first: the benches import the package from dist/. At the end a full run writes
// bench/results/latest.md and latest.svg; a run of some benches writes
// bench/results/partial-<benches>.md and .svg instead (git-ignored), never the full results
// (see report.js). `npm run bench -- --redraw` runs nothing: it draws latest.svg again from the
// figures in latest.md (after a change to the chart).
import { loadavg } from 'node:os'
import { settings } from './lib/settings.js'
import { pin, describePinning } from './lib/pinning.js'
import { killAllServers } from './lib/children.js'
import { describeRun, redraw, writeResults } from './report.js'

const benches = {
  deadline: () => import('./deadline.js'),
  proxy: () => import('./proxy.js'),
  streams: () => import('./streams.js'),
  websocket: () => import('./websocket.js'),
  pools: () => import('./pools.js'),
  grpc: () => import('./grpc.js'),
  resume: () => import('./resume.js')
}

const args = process.argv.slice(2)
if (args.includes('--redraw')) {
  console.log(`wrote ${redraw()}`)
  process.exit(0)
}
const options = { cpuProf: args.includes('--cpu-prof') }
const names = args.filter((arg) => !arg.startsWith('--'))
const unknown = names.filter((name) => !(name in benches))
if (unknown.length > 0) {
  console.error(`unknown bench: ${unknown.join(', ')} (have: ${Object.keys(benches).join(', ')})`)
  process.exit(1)
}

const startLoad = loadavg()[0]
const envs = Object.entries(process.env).filter(([name]) => name.startsWith('BENCH_') && name !== 'BENCH_NOTE').map(([name, value]) => `${name}=${value}`)
const command = [...envs, 'npm run bench', ...(args.length > 0 ? ['--', ...args] : [])].join(' ')
// the load generator is this process: it shares its cores with the upstream (lib/pinning.js)
pin(process.pid, 'load')
console.log(`node ${process.version}, ${JSON.stringify(settings)}\n${describePinning()}`)
process.once('SIGINT', () => { killAllServers(); process.exit(130) })
try {
  for (const name of names.length > 0 ? names : Object.keys(benches)) {
    const started = Date.now()
    const { default: bench } = await benches[name]()
    await bench(options)
    console.log(`(${name}: ${((Date.now() - started) / 1000).toFixed(0)} s)`)
  }
} catch (err) {
  killAllServers()
  throw err
}
const run = { ...describeRun(command, startLoad), note: process.env.BENCH_NOTE }
console.log(`\nwrote ${writeResults(run, { names, allNames: Object.keys(benches) }).join(' and ')}`)
