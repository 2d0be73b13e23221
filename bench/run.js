// `npm run bench` runs every bench in sequence; `npm run bench -- proxy websocket` runs the named
// ones; `--cpu-prof` also profiles the deadline and proxy plugins. Durations come from BENCH_*
// variables (see helpers.js). Build first: the benches import the package from dist/.
import { killAllServers, settings } from './helpers.js'

const benches = {
  deadline: () => import('./deadline.js'),
  proxy: () => import('./proxy.js'),
  websocket: () => import('./websocket.js')
}

const args = process.argv.slice(2)
const options = { cpuProf: args.includes('--cpu-prof') }
const names = args.filter((arg) => !arg.startsWith('--'))
const unknown = names.filter((name) => !(name in benches))
if (unknown.length > 0) {
  console.error(`unknown bench: ${unknown.join(', ')} (have: ${Object.keys(benches).join(', ')})`)
  process.exit(1)
}

console.log(`node ${process.version}, ${JSON.stringify(settings)}`)
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
