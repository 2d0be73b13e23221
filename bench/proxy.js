// Proxy bench: a small GET straight to the upstream, through this proxy (with and without the
// deadline plugin), through @fastify/http-proxy, nginx and Caddy (req/s, p99, ratios); the delay from the
// upstream's write of an SSE event to the client's receipt; a large streamed response's
// throughput and the proxy's peak RSS. With --cpu-prof, also profiles this proxy on the small GET.
import { request } from 'node:http'
import { settings } from './lib/settings.js'
import { startServer, stopServer } from './lib/children.js'
import { sampleRss, processMemory } from './lib/sampling.js'
import { interleavedLoad } from './lib/load.js'
import { percentile, ratio } from './lib/stats.js'
import { nowMs } from './lib/time.js'
import { format } from './lib/format.js'
import { report, addGoal } from './lib/report-state.js'
import { printProxyComparison, printTable } from './lib/tables.js'
import { startExternal, stopExternal } from './external.js'
import { profileServer } from './cpu-profile.js'

const PROXIES = ['streamline', 'streamline-deadline', 'http-proxy', 'nginx', 'caddy']
const EXTERNAL = new Set(['nginx', 'caddy'])

export default async function proxyBench ({ cpuProf = false } = {}) {
  const upstream = await startServer('server-upstream.js')
  try {
    await smallGets(upstream)
    if (cpuProf) {
      await profileServer('server-proxy.js', { MODE: 'streamline', UPSTREAM: upstream.url }, '/small', 'dist/plugins/proxy/', 'proxy plugin')
    }
    await sseDelays(upstream)
    await bigStreams(upstream)
  } finally {
    await stopServer(upstream)
  }
}

/**
 * Starts a proxy per mode (node children, or nginx / caddy) and calls fn with the ones that
 * started, each { name, url, pid, external }; a skipped external target is left out (its reason
 * printed once). `execArgv` goes to the node children only (e.g. --expose-gc).
 */
export async function withProxies (upstream, modes, fn, env = {}, execArgv = []) {
  const proxies = []
  try {
    for (const mode of modes) {
      if (EXTERNAL.has(mode)) {
        const known = report.skipped.has(mode)
        const server = known ? null : await startExternal(mode, upstream, report.skipped)
        if (server) proxies.push({ ...server, external: true })
        else if (!known) console.log(`skipping ${mode}: ${report.skipped.get(mode)}`)
      } else {
        const server = await startServer('server-proxy.js', { MODE: mode, UPSTREAM: upstream.url, ...env }, execArgv)
        proxies.push({ ...server, name: mode })
      }
    }
    return await fn(proxies)
  } finally {
    for (const server of proxies) await (server.external ? stopExternal(server) : stopServer(server))
  }
}

async function smallGets (upstream) {
  const results = await withProxies(upstream, PROXIES, (proxies) => interleavedLoad([
    { name: 'direct', url: `${upstream.url}/small`, pid: upstream.pid },
    ...proxies.map((server) => ({ name: server.name, url: `${server.url}/small`, pid: server.pid }))
  ]))
  printProxyComparison(`proxy: small GET, ${settings.connections} connections, median of ${settings.rounds} x ${settings.seconds} s`, 'request', results)
  const httpProxy = results.find((r) => r.name === 'http-proxy')
  const ours = ratio(results.find((r) => r.name === 'streamline-deadline'), httpProxy)
  addGoal('12-byte GET, 50 connections', '>= 1.3x http-proxy req/s, with the deadline plugin', `${format.ratio(ours)}x`,
    ours >= 1.3, `${format.ratio(1.3 - ours)}x`)
}

/** GET `url` and hand each body chunk to onData; resolves with the response when the body has ended. */
function get (url, onData) {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      res.on('data', onData)
      res.on('end', () => resolve(res))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.setTimeout(120_000, () => req.destroy(new Error(`no progress on ${url} for 120 s`)))
    req.end()
  })
}

/** Delay (ms) of each SSE event, from the upstream's write to its arrival here. */
async function sseDelaysOf (base) {
  const delays = []
  let buffered = ''
  await get(`${base}/sse?n=${settings.sseEvents}&every=10`, (chunk) => {
    const received = nowMs()
    buffered += chunk
    const events = buffered.split('\n\n')
    buffered = events.pop()
    for (const event of events) delays.push(received - Number(event.slice('data: '.length)))
  })
  return delays
}

async function sseDelays (upstream) {
  const modes = ['streamline', 'http-proxy', 'nginx', 'caddy']
  const rows = await withProxies(upstream, modes, async (proxies) => {
    const paths = [['direct', upstream.url], ...proxies.map((server) => [server.name, server.url])]
    const measured = []
    for (const [name, base] of paths) measured.push([name, await sseDelaysOf(base)])
    return measured
  })
  const p99 = new Map(rows.map(([name, d]) => [name, percentile(d, 99)]))
  const added = (name) => p99.get(name) - p99.get('direct')
  printTable(`proxy: SSE event delay, upstream write -> client receipt, ${settings.sseEvents} events 10 ms apart`,
    ['path', 'events', 'p50', 'p99', 'max', 'p99 added over direct', 'p99 vs http-proxy (http-proxy / path)'],
    rows.map(([name, d]) => [name, d.length, format.ms(percentile(d, 50)), format.ms(p99.get(name)), format.ms(Math.max(...d)),
      name === 'direct' ? '' : `${added(name).toFixed(2)} ms`, name === 'direct' ? '' : format.ratio(p99.get('http-proxy') / p99.get(name))]))
  addGoal('SSE events', 'p99 added over direct < 2 ms', `${added('streamline').toFixed(2)} ms`,
    added('streamline') < 2, `${(added('streamline') - 2).toFixed(2)} ms`)
}

/** Streams `mib` MiB through `base`; `pid` (optional) is the proxy whose RSS is sampled. */
async function bigStream (base, pid) {
  const before = pid === undefined ? 0 : processMemory(pid).rss
  const sampler = pid === undefined ? null : sampleRss(pid)
  let bytes = 0
  const started = nowMs()
  await get(`${base}/big?mib=${settings.streamMiB}`, (chunk) => { bytes += chunk.length })
  const seconds = (nowMs() - started) / 1000
  const peak = sampler?.stop() ?? 0
  return { bytes, mibPerSecond: bytes / 1048576 / seconds, before, peak, hwm: pid === undefined ? 0 : processMemory(pid).peak }
}

async function bigStreams (upstream) {
  const rows = [['direct', await bigStream(upstream.url)]]
  // a fresh proxy per run, so its peak RSS belongs to this stream alone
  for (const mode of ['streamline', 'http-proxy', 'nginx', 'caddy']) {
    const measured = await withProxies(upstream, [mode], ([server]) => server && bigStream(server.url, server.pid))
    if (measured) rows.push([mode, measured])
  }
  const speed = new Map(rows.map(([name, r]) => [name, r.mibPerSecond]))
  const growth = (r) => r.peak - r.before
  printTable(`proxy: one ${settings.streamMiB} MiB streamed response (nginx: master + worker)`,
    ['path', 'received', 'throughput', 'vs direct', 'vs http-proxy', 'proxy RSS before', 'proxy peak RSS (sampled / VmHWM)', 'peak RSS growth'],
    rows.map(([name, r]) => [name, format.mib(r.bytes), `${r.mibPerSecond.toFixed(0)} MiB/s`,
      format.ratio(r.mibPerSecond / speed.get('direct')), name === 'direct' ? '' : format.ratio(r.mibPerSecond / speed.get('http-proxy')),
      r.before ? format.mib(r.before) : '', r.peak ? `${format.mib(r.peak)} / ${format.mib(r.hwm)}` : '',
      r.peak ? format.mib(growth(r)) : '']))
  const ours = rows.find(([name]) => name === 'streamline')[1]
  const vsDirect = ours.mibPerSecond / speed.get('direct')
  addGoal(`${settings.streamMiB} MiB download`, '>= 0.5x direct MiB/s', `${format.ratio(vsDirect)}x`, vsDirect >= 0.5, `${format.ratio(0.5 - vsDirect)}x`)
  const grown = growth(ours) / 1048576
  addGoal(`${settings.streamMiB} MiB download`, 'proxy peak RSS growth < 32 MiB', `${grown.toFixed(1)} MiB`, grown < 32, `${(grown - 32).toFixed(1)} MiB`)
}
