// Proxy bench: a small GET straight to the upstream, through this proxy (with and without the
// deadline plugin) and through @fastify/http-proxy (req/s, p99, ratios); the delay from the
// upstream's write of an SSE event to the client's receipt; a large streamed response's
// throughput and the proxy's peak RSS. With --cpu-prof, also profiles this proxy on the small GET.
import { request } from 'node:http'
import {
  settings, startServer, stopServer, interleavedLoad, printProxyComparison, sampleRss, processMemory,
  percentile, nowMs, printTable, format
} from './helpers.js'
import { profileServer } from './cpu-profile.js'

const PROXIES = ['streamline', 'streamline-deadline', 'http-proxy']

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

async function withProxies (upstream, modes, fn) {
  const proxies = []
  try {
    for (const mode of modes) proxies.push(await startServer('server-proxy.js', { MODE: mode, UPSTREAM: upstream.url }))
    return await fn(proxies)
  } finally {
    for (const server of proxies) await stopServer(server)
  }
}

async function smallGets (upstream) {
  const results = await withProxies(upstream, PROXIES, (proxies) => interleavedLoad([
    { name: 'direct', url: `${upstream.url}/small`, pid: upstream.pid },
    ...proxies.map((server, i) => ({ name: PROXIES[i], url: `${server.url}/small`, pid: server.pid }))
  ]))
  printProxyComparison(`proxy: small GET, ${settings.connections} connections, median of ${settings.rounds} x ${settings.seconds} s`, 'request', results)
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
  const modes = ['streamline', 'http-proxy']
  const rows = await withProxies(upstream, modes, async (proxies) => {
    const paths = [['direct', upstream.url], ...proxies.map((server, i) => [modes[i], server.url])]
    const measured = []
    for (const [name, base] of paths) measured.push([name, await sseDelaysOf(base)])
    return measured
  })
  printTable(`proxy: SSE event delay, upstream write -> client receipt, ${settings.sseEvents} events 10 ms apart`,
    ['path', 'events', 'p50', 'p99', 'max'],
    rows.map(([name, d]) => [name, d.length, format.ms(percentile(d, 50)), format.ms(percentile(d, 99)), format.ms(Math.max(...d))]))
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
  for (const mode of ['streamline', 'http-proxy']) {
    rows.push([mode, await withProxies(upstream, [mode], ([server]) => bigStream(server.url, server.pid))])
  }
  printTable(`proxy: one ${settings.streamMiB} MiB streamed response`,
    ['path', 'received', 'throughput', 'proxy RSS before', 'proxy peak RSS (sampled / VmHWM)'],
    rows.map(([name, r]) => [name, format.mib(r.bytes), `${r.mibPerSecond.toFixed(0)} MiB/s`,
      r.before ? format.mib(r.before) : '', r.peak ? `${format.mib(r.peak)} / ${format.mib(r.hwm)}` : '']))
}
