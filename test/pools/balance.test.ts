import t from 'tap'
import http from 'node:http'
import { proxyApp } from '../helpers/proxy-servers.js'
import { within, PROMPTLY, until } from '../helpers/bounded.js'
import { subscribe } from '../helpers/channels.js'
import { CHANNELS, type UpstreamSetMessage } from '../../index.js'
import { get, replicas, tally, type ReplicaHandler } from './replicas.js'

// Which replica takes each request: the policies, weights, hash affinity, and in-flight work
// (open event streams) steering least-request.

t.test('round robin follows the weights, smoothly', async (t) => {
  const pool = await replicas(t, ['a', 'b', 'c'])
  const { url } = await proxyApp(t, { upstream: [{ url: pool[0].url, weight: 5 }, pool[1].url, pool[2].url], balance: 'round-robin' })
  const bodies: string[] = []
  for (let i = 0; i < 14; i++) bodies.push((await get(url + '/w')).body)
  t.same(tally(bodies), { a: 10, b: 2, c: 2 }, '5:1:1')
  t.notOk(bodies.join('').includes('aaaaa'), `interleaved, not in runs (${bodies.join('')})`)
  t.ok(pool.every(r => r.seen.every(s => s.host === `127.0.0.1:${r.port}`)), 'each replica got its own Host')
})

t.test('random and least-request reach every replica, by weight', async (t) => {
  for (const balance of ['random', 'least-request'] as const) {
    const pool = await replicas(t, ['a', 'b'])
    const { url } = await proxyApp(t, { upstream: [{ url: pool[0].url, weight: 3 }, pool[1].url], balance })
    const bodies: string[] = []
    for (let i = 0; i < 200; i++) bodies.push((await get(url + '/r')).body)
    const counts = tally(bodies)
    // Expected 150:50; the bounds are far outside what chance gives (p < 1e-6).
    t.ok(counts.a > 105 && counts.b > 15, `${balance}: both serve, by weight (${JSON.stringify(counts)})`)
  }
})

t.test('hash affinity: a key stays on its replica; a replica leaving moves only its own keys', async (t) => {
  const pool = await replicas(t, ['a', 'b', 'c'])
  let set = pool.map(r => r.url)
  const changes = subscribe<UpstreamSetMessage>(t, CHANNELS.upstreamSet)
  const { url } = await proxyApp(t, {
    upstream: pool.map(r => r.url),
    balance: { hash: (request) => String(request.headers['x-user']) },
    resolve: { replicas: async () => set, interval: 50 }
  })
  const keys = Array.from({ length: 60 }, (_, i) => `user-${i}`)
  const before = new Map<string, string>()
  for (const key of keys) before.set(key, (await get(url + '/h', { 'x-user': key })).body)
  for (const key of keys.slice(0, 10)) t.equal((await get(url + '/h', { 'x-user': key })).body, before.get(key), `${key} again on its replica`)
  t.equal(Object.keys(tally([...before.values()])).length, 3, 'keys spread over the three')

  const known = changes.messages.length
  set = [pool[0].url, pool[2].url]
  await within(PROMPTLY, changes.waitFor(known + 1), 'the replica set changed')
  t.same(changes.messages[known].upstreams, set)
  let moved = 0
  for (const key of keys) {
    const now = (await get(url + '/h', { 'x-user': key })).body
    t.not(now, 'b', `${key} not on the replica that left`)
    if (before.get(key) !== 'b') t.equal(now, before.get(key), `${key} stayed where it was`)
    else moved++
  }
  t.ok(moved > 0, 'the keys of b moved')
})

t.test('least-request: a replica holding open event streams gets the next requests less; a replica that joins takes them', async (t) => {
  const handler: ReplicaHandler = (req, res, name) => {
    if (req.url !== '/events') return res.end(name)
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(`data: ${name}\n\n`)
  }
  const [busy, fresh] = await replicas(t, ['busy', 'fresh'], handler)
  let set = [busy.url]
  const changes = subscribe<UpstreamSetMessage>(t, CHANNELS.upstreamSet)
  const { url } = await proxyApp(t, { upstream: [busy.url], resolve: { replicas: async () => set, interval: 50 } })
  const streams: http.ClientRequest[] = []
  t.teardown(() => { for (const stream of streams) stream.destroy() })
  for (let i = 0; i < 10; i++) streams.push(await openStream(url + '/events'))
  t.equal(busy.seen.length, 10, 'the ten streams on the only replica')

  const known = changes.messages.length
  set = [busy.url, fresh.url]
  await within(PROMPTLY, changes.waitFor(known + 1), 'the new replica joined')
  const bodies: string[] = []
  for (let i = 0; i < 10; i++) bodies.push((await get(url + '/plain')).body)
  t.same(tally(bodies), { fresh: 10 }, 'every plain request went to the replica not holding ten streams')
  t.equal(busy.seen.length, 10, 'the busy replica saw no plain request')

  // The streams run on, relayed, on the replica they started on.
  streams.splice(0).forEach(stream => stream.destroy())
  await until(PROMPTLY, () => bodies.length === 10, 'done')
})

function openStream (url: string): Promise<http.ClientRequest> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => { res.once('data', () => resolve(req)) })
    req.on('error', reject)
  })
}
