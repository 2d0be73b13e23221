import t from 'tap'
import { CHANNELS, type UpstreamEjectedMessage, type UpstreamRestoredMessage } from '../../index.js'
import { proxyApp } from '../helpers/proxy-servers.js'
import { subscribe } from '../helpers/channels.js'
import { within, ANSWERED, PROMPTLY, receiveWithin } from '../helpers/bounded.js'
import { childUpstream } from '../helpers/child-upstream.js'
import { get, replicas, tally } from './replicas.js'

// Failover and passive health with real replicas: one stops (connect refused, as after a crash)
// while requests run through the ingress; no client sees it, the replica is ejected after
// `consecutiveFailures`, and it comes back after it restarts and the ejection time is over.

/** `count` GETs, `concurrency` at a time; every status and body. */
async function load (url: string, count: number, concurrency = 4): Promise<Array<{ status: number, body: string }>> {
  const results: Array<{ status: number, body: string }> = []
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      next++
      results.push(await get(url))
    }
  }))
  return results
}

function failed (results: Array<{ status: number }>): number {
  return results.filter(r => r.status !== 200).length
}

t.test('a replica that stops: no failed request, ejected after consecutiveFailures, back after restart and baseEjection', async (t) => {
  const [a, b, c] = await replicas(t, ['a', 'b', 'c'])
  const ejected = subscribe<UpstreamEjectedMessage>(t, CHANNELS.upstreamEjected)
  const restored = subscribe<UpstreamRestoredMessage>(t, CHANNELS.upstreamRestored)
  const { url } = await proxyApp(t, { upstream: [a.url, b.url, c.url], outlierDetection: { consecutiveFailures: 3, baseEjection: 1500 } })

  const before = await load(url + '/x', 60)
  t.equal(failed(before), 0)
  t.same(Object.keys(tally(before.map(r => r.body))).sort(), ['a', 'b', 'c'], 'all three served')

  await b.stop()
  const during = await load(url + '/x', 120)
  t.equal(failed(during), 0, 'no client saw the stopped replica')
  t.notOk(during.some(r => r.body === 'b'))
  await within(PROMPTLY, ejected.waitFor(1), 'the stopped replica ejected')
  t.equal(ejected.messages[0].upstream, b.url)
  t.equal(ejected.messages[0].failures, 3)
  t.ok(ejected.messages[0].until > Date.now(), 'ejected until a time to come')

  // Ejected: the next requests never try it (the upstream counts no connect either way; the
  // replica is down, so what shows is that no attempt needed a failover: all fast 200s).
  await b.restart()
  await within(5000, restored.waitFor(1), 'the replica back after baseEjection')
  t.equal(restored.messages[0].upstream, b.url)
  const after = await load(url + '/x', 60)
  t.equal(failed(after), 0)
  t.ok(after.some(r => r.body === 'b'), 'the restarted replica serves again')
})

t.test('ejection is bounded: maxEjectionPercent keeps replicas in rotation; every replica down is a 502, not a hang', async (t) => {
  const [a, b] = await replicas(t, ['a', 'b'])
  const ejected = subscribe<UpstreamEjectedMessage>(t, CHANNELS.upstreamEjected)
  const { url } = await proxyApp(t, { upstream: [a.url, b.url], outlierDetection: { consecutiveFailures: 1, baseEjection: 60_000 } })
  await a.stop()
  await b.stop()
  const results = await load(url + '/y', 10, 1)
  t.same(results.map(r => r.status), Array(10).fill(502), 'each request answered 502')
  t.equal(JSON.parse(results[0].body).code, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE')
  t.ok(results.every(r => !r.body.includes('127.0.0.1') && !r.body.includes(String(a.port)) && !r.body.includes(String(b.port))), 'no replica address in an answer')
  t.equal(ejected.messages.length, 1, 'at most half of a pool of two ejected (at least one)')
})

t.test('a small PUT to a replica answering 503 is sent again to another, with its body', async (t) => {
  const handler = (_req: unknown, res: import('node:http').ServerResponse, name: string, body: string): void => {
    if (name === 'sick') {
      res.statusCode = 503
      res.end('busy')
      return
    }
    res.end(`${name}:${body}`)
  }
  const pool = await replicas(t, ['sick', 'well'], handler)
  const [sick, well] = pool
  const { url } = await proxyApp(t, { upstream: pool.map(r => r.url), balance: 'round-robin' })
  for (let i = 0; i < 4; i++) {
    const res = await receiveWithin(url + '/doc', { method: 'PUT', headers: { 'content-type': 'text/plain' } }, `body-${i}`)
    t.equal(res.status, 200)
    t.equal(res.body, `well:body-${i}`)
  }
  t.ok(sick.seen.length >= 1, 'the sick replica was tried')
  t.ok(sick.seen.every(r => r.method === 'PUT' && r.body.startsWith('body-')), 'it got the whole body')
  t.equal(well.seen.length, 4, 'each PUT reached the well replica once')
  t.same(well.seen.map(r => r.body), ['body-0', 'body-1', 'body-2', 'body-3'])
})

t.test('POST and a large body are not sent twice after they reached a replica', async (t) => {
  const handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, name: string): void => {
    if (name === 'bad') {
      req.socket.destroy()
      return
    }
    res.end(name)
  }
  const pool = await replicas(t, ['bad', 'good'], handler)
  const [bad, good] = pool
  const { url } = await proxyApp(t, { upstream: pool.map(r => r.url), balance: 'round-robin', outlierDetection: false })
  // Round robin from the first replica: each request goes to bad, then good, then bad...
  const large = 'x'.repeat(256 * 1024)
  const sent: Array<[string, string]> = [['POST', 'one order'], ['POST', 'two orders'], ['PUT', large], ['PUT', large]]
  const statuses: number[] = []
  for (const [method, body] of sent) statuses.push((await receiveWithin(url + '/r', { method, headers: { 'content-type': 'text/plain' } }, body)).status)
  t.same(statuses, [502, 200, 502, 200], 'what reached the bad replica is a 502, not sent again')
  t.same(bad.seen.map(r => [r.method, r.body.length]), [['POST', 9], ['PUT', large.length]], 'the bad replica got a POST and a PUT over retryBodyLimit')
  t.same(good.seen.map(r => [r.method, r.body.length]), [['POST', 10], ['PUT', large.length]], 'the good one only its own turns')
})

t.test('a failover keeps to the deadline: each replica is told the time left', async (t) => {
  const slowRefusal = (_req: unknown, res: import('node:http').ServerResponse, name: string): void => {
    if (name === 'slow') setTimeout(() => { res.statusCode = 503; res.end() }, 400)
    else res.end(name)
  }
  const pool = await replicas(t, ['slow', 'fast'], slowRefusal)
  const [slow, fast] = pool
  const { url } = await proxyApp(t, { upstream: pool.map(r => r.url), balance: 'round-robin', outlierDetection: false }, { deadline: { timeout: 5000 } })
  t.same(await get(url + '/a'), { status: 200, body: 'fast' })
  t.same(await get(url + '/b'), { status: 200, body: 'fast' })
  const first = slow.seen[0].budget as number
  const second = fast.seen.find(r => r.url === slow.seen[0].url)?.budget as number
  t.ok(first <= 5000 && first > 4000, `the first replica got the whole budget (${first})`)
  t.ok(second <= first - 300, `the replica after it got what was left (${second} after ${first})`)
})

t.test('a failover never outlasts the deadline: every replica refusing ends with the deadline, not after it', async (t) => {
  const pool = await replicas(t, ['a', 'b', 'c'], (_req, res) => { setTimeout(() => { res.statusCode = 503; res.end() }, 300) })
  const { url } = await proxyApp(t, { upstream: pool.map(r => r.url), retries: 10, outlierDetection: false }, { deadline: { timeout: 1000 } })
  const started = Date.now()
  const res = await receiveWithin(url + '/q')
  const took = Date.now() - started
  t.ok([503, 504].includes(res.status), `answered ${res.status}`)
  t.ok(took < 2500, `within the deadline's reach (${took} ms)`)
  const attempts = pool.reduce((n, r) => n + r.seen.length, 0)
  t.ok(attempts >= 3 && attempts <= 5, `attempts bounded by the deadline, not by retries (${attempts})`)
})

t.test('a replica process killed with SIGKILL under a steady 200 GET/s: no failed request', async (t) => {
  const [first, second] = await Promise.all([childUpstream(t), childUpstream(t)])
  const ejected = subscribe<UpstreamEjectedMessage>(t, CHANNELS.upstreamEjected)
  const { url } = await proxyApp(t, { upstream: [first.url, second.url], outlierDetection: { consecutiveFailures: 3 } })
  const statuses: number[] = []
  // 200 requests a second for two seconds, one every 5 ms whatever the answers take; the kill halfway.
  const sent: Array<Promise<void>> = []
  for (let i = 0; i < 400; i++) {
    if (i === 200) first.child.kill('SIGKILL')
    sent.push(get(url + '/slow?ms=0').then(r => { statuses.push(r.status) }, () => { statuses.push(0) }))
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  await within(ANSWERED, Promise.all(sent), 'every answer')
  t.equal(statuses.length, 400)
  t.same(statuses.filter(s => s !== 200), [], 'no failed request')
  await within(PROMPTLY, ejected.waitFor(1), 'the killed replica ejected')
  t.equal(ejected.messages[0].upstream, first.url)
})
