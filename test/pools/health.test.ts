import t from 'tap'
import http from 'node:http'
import Fastify from 'fastify'
import { CHANNELS, type UpstreamHealthMessage, type UpstreamSetMessage } from '../../index.js'
import proxy from '../../plugins/proxy/index.js'
import { proxyApp } from '../helpers/proxy-servers.js'
import { subscribe } from '../helpers/channels.js'
import { within, PROMPTLY, receiveWithin } from '../helpers/bounded.js'
import { handles } from '../helpers/resources.js'
import { get, replicas, tally, type ReplicaHandler } from './replicas.js'

// Active health checks, the replica set changing under open streams, DNS resolution, and what
// a pool leaves behind when the app closes: nothing.

/** Answers everything, except that a `hung` replica accepts and never answers (health checks included). */
function hangingWhen (hung: Set<string>): ReplicaHandler {
  return (_req, res, name) => {
    if (hung.has(name)) return
    res.end(name)
  }
}

t.test('a replica that accepts and never answers: out by the check\'s timeout; requests sent to it end with the deadline', async (t) => {
  const hung = new Set<string>()
  const pool = await replicas(t, ['a', 'b'], hangingWhen(hung))
  const health = subscribe<UpstreamHealthMessage>(t, CHANNELS.upstreamHealth)
  const { url } = await proxyApp(t, {
    upstream: pool.map(r => r.url),
    balance: 'round-robin',
    retries: 0,
    outlierDetection: false,
    healthCheck: { path: '/healthz', interval: 100, timeout: 200, unhealthyThreshold: 2, healthyThreshold: 1 }
  }, { deadline: { timeout: 1000 } })
  hung.add('a')
  // One request lands on `a` before the checks notice: the deadline answers it.
  const caught = await Promise.all([receiveWithin(url + '/1'), receiveWithin(url + '/2')])
  t.same(caught.map(r => r.status).sort(), [200, 504], 'the request on the hung replica got the deadline\'s 504')

  await within(PROMPTLY, health.waitFor(1), 'the check took the hung replica out')
  t.same(health.messages[0], { upstream: pool[0].url, healthy: false })
  const during: string[] = []
  for (let i = 0; i < 10; i++) during.push((await get(url + '/x')).body)
  t.same(tally(during), { b: 10 }, 'no request goes to it while it is out')
  t.ok(pool[0].seen.some(r => r.url === '/healthz'), 'the replica was checked at the configured path')

  hung.delete('a')
  await within(PROMPTLY, health.waitFor(2), 'the check brought it back')
  t.same(health.messages[1], { upstream: pool[0].url, healthy: true })
  const after: string[] = []
  for (let i = 0; i < 10; i++) after.push((await get(url + '/x')).body)
  t.same(tally(after), { a: 5, b: 5 })
})

t.test('a replica leaving the set keeps its open event stream; new requests avoid it', async (t) => {
  const streams: http.ServerResponse[] = []
  const handler: ReplicaHandler = (req, res, name) => {
    if (req.url !== '/events') return res.end(name)
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(`data: ${name} 0\n\n`)
    streams.push(res)
  }
  const [a, b] = await replicas(t, ['a', 'b'], handler)
  let set = [a.url]
  const changes = subscribe<UpstreamSetMessage>(t, CHANNELS.upstreamSet)
  const { url } = await proxyApp(t, { upstream: [a.url], resolve: { replicas: async () => set, interval: 50 } })
  const events: string[] = []
  const req = http.get(url + '/events', { agent: false }, (res) => { res.setEncoding('utf8'); res.on('data', (d: string) => events.push(d)) })
  t.teardown(() => req.destroy())
  await within(PROMPTLY, new Promise<void>(resolve => { const poll = setInterval(() => { if (events.length > 0) { clearInterval(poll); resolve() } }, 5) }), 'the first event')

  const known = changes.messages.length
  set = [b.url]
  await within(PROMPTLY, changes.waitFor(known + 1), 'a left the set')
  for (let i = 0; i < 5; i++) t.same(await get(url + '/plain'), { status: 200, body: 'b' }, 'new requests go to b')
  streams[0].write('data: a 1\n\n')
  await within(PROMPTLY, new Promise<void>(resolve => { const poll = setInterval(() => { if (events.join('').includes('a 1')) { clearInterval(poll); resolve() } }, 5) }), 'the stream on a still relayed')
  t.equal(a.seen.filter(r => r.url === '/plain').length, 0, 'a took no new request')
})

t.test('resolve: { dns: true } expands a host name into its addresses; the Host header keeps the name', async (t) => {
  const [a] = await replicas(t, ['a'])
  const changes = subscribe<UpstreamSetMessage>(t, CHANNELS.upstreamSet)
  const { url } = await proxyApp(t, { upstream: `http://localhost:${a.port}`, resolve: { dns: true } })
  await within(PROMPTLY, changes.waitFor(1), 'the resolved set')
  t.ok(changes.messages[0].upstreams.includes(`http://127.0.0.1:${a.port}`), `localhost resolved to 127.0.0.1 (${changes.messages[0].upstreams.join(', ')})`)
  t.same(await get(url + '/d'), { status: 200, body: 'a' })
  t.equal(a.seen[0].host, `localhost:${a.port}`)
})

t.test('close(): the pool\'s checks and resolve stop; their timers never kept the process alive', async (t) => {
  const pool = await replicas(t, ['a', 'b'])
  const before = handles().Timeout ?? 0
  let resolved = 0
  const app = Fastify()
  await app.register(proxy, {
    upstream: pool.map(r => r.url),
    resolve: { replicas: async () => { resolved++; return pool.map(r => r.url) }, interval: 20 },
    healthCheck: { path: '/healthz', interval: 20 },
    outlierDetection: { consecutiveFailures: 1, baseEjection: 60_000 }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  const checks = (): number => pool[0].seen.filter(r => r.url === '/healthz').length
  await within(PROMPTLY, until(() => checks() >= 3 && resolved >= 3), 'checks and refreshes running')
  await pool[1].stop()
  for (let i = 0; i < 4; i++) await get(`http://127.0.0.1:${address.port}/c`)
  t.equal(handles().Timeout ?? 0, before, 'the interval, check and ejection timers are unref\'d: none keeps the process alive')

  await app.close()
  const [checksAtClose, resolvedAtClose] = [checks(), resolved]
  // Ten intervals of silence: what is stopped stays stopped (an absence needs a wait).
  await new Promise(resolve => setTimeout(resolve, 200))
  t.equal(checks(), checksAtClose, 'no health check after close()')
  t.equal(resolved, resolvedAtClose, 'no resolve after close()')
})

async function until (condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise(resolve => setTimeout(resolve, 5))
}
