// WebSocket bench: echo round trips per second and p99 straight to the upstream, through this
// proxy (websocket: true), through @fastify/http-proxy (websocket: true), nginx and Caddy, as ratios; then the
// proxy's memory per idle open tunnel with BENCH_WS_TUNNELS (2,000) of them open. With --cpu-prof,
// also profiles this proxy's tunnel code under the echo load.
import { once } from 'node:events'
import WebSocket from 'ws'
import { settings } from './lib/settings.js'
import { startServer, stopServer, ask } from './lib/children.js'
import { processCpuMs, processMemory } from './lib/sampling.js'
import { interleavedLoad } from './lib/load.js'
import { percentile, ratio } from './lib/stats.js'
import { nowMs, wait } from './lib/time.js'
import { format } from './lib/format.js'
import { addGoal } from './lib/report-state.js'
import { printProxyComparison, printTable } from './lib/tables.js'
import { withProxies } from './proxy.js'
import { profileServer } from './cpu-profile.js'

const MODES = ['streamline', 'http-proxy']
const message = Buffer.alloc(32, 'm')

export default async function websocketBench ({ cpuProf = false } = {}) {
  const upstream = await startServer('server-upstream.js')
  try {
    await echoes(upstream)
    if (cpuProf) {
      await profileServer('server-proxy.js', { MODE: 'streamline', UPSTREAM: upstream.url, WEBSOCKET: '1' }, '/ws',
        'dist/plugins/proxy/websocket/', 'WebSocket tunnel', (url) => echoRun(url.replace('http:', 'ws:')))
    }
    await idleTunnels(upstream)
  } finally {
    await stopServer(upstream)
  }
}

function wsUrl (httpUrl) {
  return `${httpUrl.replace('http:', 'ws:')}/ws`
}

async function open (url) {
  const socket = new WebSocket(url, { perMessageDeflate: false })
  await once(socket, 'open')
  return socket
}

async function closeAll (sockets) {
  await Promise.all(sockets.map((socket) => {
    if (socket.readyState === WebSocket.CLOSED) return null
    const closed = once(socket, 'close')
    socket.terminate()
    return closed
  }))
}

/** Each of settings.wsClients clients sends, awaits the echo, and sends again, for `seconds`. */
async function echoRun (url, seconds = settings.seconds, pid = undefined) {
  const sockets = await Promise.all(Array.from({ length: settings.wsClients }, () => open(url)))
  const latencies = []
  let failures = 0
  const endAt = nowMs() + seconds * 1000
  const loop = async (socket) => {
    while (nowMs() < endAt) {
      const sent = nowMs()
      socket.send(message)
      const [data] = await once(socket, 'message')
      if (data.length !== message.length) failures++
      latencies.push(nowMs() - sent)
    }
  }
  const started = nowMs()
  // no pid: a profiling run, where only the profile counts
  const cpuMs = () => pid === undefined ? 0 : processCpuMs(pid)
  const cpuBefore = cpuMs()
  await Promise.all(sockets.map(loop))
  const elapsed = (nowMs() - started) / 1000
  const cpuPerRequest = ((cpuMs() - cpuBefore) * 1000) / latencies.length
  await closeAll(sockets)
  return { rps: latencies.length / elapsed, p99: percentile(latencies, 99), cpuPerRequest, failures }
}

async function echoes (upstream) {
  const results = await withProxies(upstream, [...MODES, 'nginx', 'caddy'], (proxies) => interleavedLoad([
    { name: 'direct', url: wsUrl(upstream.url), pid: upstream.pid },
    ...proxies.map((server) => ({ name: server.name, url: wsUrl(server.url), pid: server.pid }))
  ], echoRun), { WEBSOCKET: '1' })
  printProxyComparison(`websocket: 32-byte echo, ${settings.wsClients} clients, median of ${settings.rounds} x ${settings.seconds} s`, 'round trip', results)
  const [direct] = results
  const httpProxy = results.find((r) => r.name === 'http-proxy')
  const ours = results.find((r) => r.name === 'streamline')
  const vsDirect = ratio(ours, direct)
  const vsHttpProxy = ratio(ours, httpProxy)
  addGoal(`WebSocket echo, ${settings.wsClients} clients`, '>= 0.9x direct', `${format.ratio(vsDirect)}x`, vsDirect >= 0.9, `${format.ratio(0.9 - vsDirect)}x`)
  addGoal(`WebSocket echo, ${settings.wsClients} clients`, '>= 1.5x http-proxy', `${format.ratio(vsHttpProxy)}x`, vsHttpProxy >= 1.5, `${format.ratio(1.5 - vsHttpProxy)}x`)
}

/** RSS growth of a fresh proxy process while settings.wsTunnels idle tunnels are open through it. */
async function tunnelMemory (upstream, mode) {
  const server = await startServer('server-proxy.js', { MODE: mode, UPSTREAM: upstream.url, WEBSOCKET: '1' }, ['--expose-gc'])
  const sockets = []
  try {
    await closeAll([await open(wsUrl(server.url))]) // warm the code paths before the baseline
    const before = await ask(server, 'mem')
    for (let i = 0; i < settings.wsTunnels; i += 100) {
      const batch = Math.min(100, settings.wsTunnels - i)
      sockets.push(...await Promise.all(Array.from({ length: batch }, () => open(wsUrl(server.url)))))
    }
    await wait(1000) // let the proxy finish the upstream side of the last handshakes
    const after = await ask(server, 'mem')
    return { before, after, peak: processMemory(server.pid).peak }
  } finally {
    await closeAll(sockets)
    await stopServer(server)
  }
}

async function idleTunnels (upstream) {
  const rows = []
  for (const mode of MODES) rows.push([mode, await tunnelMemory(upstream, mode)])
  const n = settings.wsTunnels
  printTable(`websocket: memory of ${n} idle open tunnels (proxy process, after gc)`,
    ['proxy', 'RSS before', 'RSS with tunnels', 'RSS per tunnel', 'heap per tunnel'],
    rows.map(([name, m]) => [name, format.mib(m.before.rss), format.mib(m.after.rss),
      format.kib((m.after.rss - m.before.rss) / n), format.kib((m.after.heapUsed - m.before.heapUsed) / n)]))
}
