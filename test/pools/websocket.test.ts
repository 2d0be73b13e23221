// WebSocket upgrades through an upstream pool: the handshake goes to a replica chosen by the
// pool's balance (hash affinity honoured), a replica that cannot be reached is skipped before
// the client sees anything, and an open tunnel counts in flight on its replica until it ends.
import { once } from 'node:events'
import t, { type Test } from 'tap'
import type { WebSocket } from 'ws'
import { CHANNELS, type TunnelClosedMessage, type UpstreamEjectedMessage, type UpstreamSetMessage } from '../../lib/diagnostics.js'
import { H2_MODES } from '../helpers/h2.js'
import { h2ConnectSession, h2ProxyApp, openH2WebSocket } from '../helpers/h2-websocket.js'
import { openClient, parseReply, proxyApp, rawClient, rawUpstream, upgradeRequest } from '../helpers/ws-servers.js'
import { PROMPTLY, until, within } from '../helpers/bounded.js'
import { subscribe } from '../helpers/channels.js'
import { tally } from './replicas.js'
import { capturePools, closeClient, echo, inflight, servedBy, wsReplicas, type WsReplica } from './ws-replicas.js'

/** A WebSocket through the proxy, open; bounded. */
async function opened (url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return await within(PROMPTLY, openClient(url, undefined, { headers }), `a WebSocket opened at ${url}`)
}

/** Opens a WebSocket at each path and returns them with the name of the replica each echo came from. */
async function openEach (t: Test, url: string, paths: string[]): Promise<{ clients: WebSocket[], served: string[] }> {
  const clients: WebSocket[] = []
  t.teardown(() => { for (const ws of clients) ws.terminate() })
  const served: string[] = []
  for (const path of paths) {
    const ws = await opened(url + path)
    clients.push(ws)
    served.push(servedBy(await echo(ws, path)))
  }
  return { clients, served }
}

/** Every replica of the pool has nothing in flight (no tunnel, no handshake left counted). */
async function noneInFlight (pool: Parameters<typeof inflight>[0], what: string): Promise<void> {
  await until(PROMPTLY, () => Object.values(inflight(pool)).every(n => n === 0), `${what}: nothing in flight (${JSON.stringify(inflight(pool))})`)
}

function byName (replicas: WsReplica[]): Record<string, WsReplica> {
  return Object.fromEntries(replicas.map(r => [r.name, r]))
}

t.test('upgrades are spread over the replicas; each echo comes from the replica that took the handshake', async (t) => {
  const replicas = await wsReplicas(t, ['a', 'b', 'c'])
  const pools = capturePools(t)
  const { url } = await proxyApp(t, { upstream: replicas.map(r => r.url), balance: 'round-robin' })
  const paths = Array.from({ length: 6 }, (_, i) => `/room/${i}`)
  const { clients, served } = await openEach(t, url, paths)
  t.same(tally(served), { a: 2, b: 2, c: 2 }, 'round-robin: two tunnels on each replica')
  const named = byName(replicas)
  for (const [i, name] of served.entries()) {
    t.ok(named[name].handshakes.some(h => h.url === `/room/${i}`), `/room/${i}: its handshake reached ${name}, which echoed`)
  }
  for (const r of replicas) {
    t.equal(r.handshakes.length, 2, `${r.name} got two handshakes`)
    t.ok(r.handshakes.every(h => h.headers.host === `127.0.0.1:${r.port}`), `${r.name} got its own Host`)
    t.equal(r.open(), 2, `${r.name} holds two WebSockets`)
  }
  t.same(inflight(pools[0]), Object.fromEntries(replicas.map(r => [r.origin, 2])), 'each open tunnel counts in flight on its replica')
  for (const ws of clients) await closeClient(ws)
  await noneInFlight(pools[0], 'all tunnels closed')
})

t.test('a stopped replica: every handshake opens on a live one, no client sees an error; the failures eject it', async (t) => {
  const replicas = await wsReplicas(t, ['a', 'b', 'c'])
  const [, b] = replicas
  await b.stop()
  const ejected = subscribe<UpstreamEjectedMessage>(t, CHANNELS.upstreamEjected)
  const pools = capturePools(t)
  const { url } = await proxyApp(t, { upstream: replicas.map(r => r.url), outlierDetection: { consecutiveFailures: 2 } })
  const { clients, served } = await openEach(t, url, Array.from({ length: 12 }, (_, i) => `/s/${i}`))
  t.equal(served.length, 12, 'every handshake opened')
  t.notOk(served.includes('b'), `none on the stopped replica (${JSON.stringify(tally(served))})`)
  t.ok(served.includes('a') && served.includes('c'), 'both live replicas took some')
  t.equal(replicas[0].handshakes.length + replicas[2].handshakes.length, 12, 'the live replicas got each handshake once')
  t.same(ejected.messages.map(m => m.upstream), [b.origin], 'its refused connections ejected the stopped replica')
  t.equal(pools[0].snapshot().find(r => r.origin === b.origin)?.inflight, 0, 'the failed attempts are not left in flight')
  for (const ws of clients) await closeClient(ws)
  await noneInFlight(pools[0], 'all tunnels closed')
})

t.test('a replica refusing handshakes with 503 counts as failing (relayed, not retried); a 403 does not', async (t) => {
  const replicas = await wsReplicas(t, ['a', 'b', 'c'])
  const [a, b, c] = replicas
  b.refuseWith = 503
  c.refuseWith = 403
  const ejected = subscribe<UpstreamEjectedMessage>(t, CHANNELS.upstreamEjected)
  const pools = capturePools(t)
  const { url } = await proxyApp(t, { upstream: replicas.map(r => r.url), balance: 'round-robin', outlierDetection: { consecutiveFailures: 2, maxEjectionPercent: 100 } })
  const answers: string[] = []
  for (let i = 0; i < 9; i++) {
    const result = await within(PROMPTLY, openClient(`${url}/r/${i}`).then(async ws => { const served = servedBy(await echo(ws, 'x')); await closeClient(ws); return served }, (err: Error) => err.message), `handshake ${i}`)
    answers.push(result)
  }
  t.same(answers.slice(0, 5), ['a', 'unexpected response 503', 'unexpected response 403', 'a', 'unexpected response 503'], 'each replica\'s answer reaches the client as it is')
  t.notOk(answers.slice(5).includes('unexpected response 503'), `once ejected, the 503 replica gets none (${JSON.stringify(answers.slice(5))})`)
  t.equal(b.handshakes.length, 2, 'the 503 replica got two handshakes, each once: a refusal is not retried')
  t.same(ejected.messages.map(m => m.upstream), [b.origin], 'two 503s in a row ejected it; the 403s did not eject theirs')
  t.equal(a.handshakes.length, answers.filter(x => x === 'a').length, 'a got the handshakes it answered')
  t.equal(c.handshakes.length, answers.filter(x => x === 'unexpected response 403').length, 'c got the handshakes it refused')
  await noneInFlight(pools[0], 'after refusals and closed tunnels')
})

t.test('hash affinity: the same key opens on the same replica every time', async (t) => {
  const replicas = await wsReplicas(t, ['a', 'b', 'c'])
  const { url } = await proxyApp(t, { upstream: replicas.map(r => r.url), balance: { hash: (request) => String(request.headers['x-user']) } })
  const homes = new Map<string, string>()
  for (let round = 0; round < 3; round++) {
    for (let k = 0; k < 12; k++) {
      const key = `user-${k}`
      const ws = await opened(`${url}/chat`, { 'x-user': key })
      const name = servedBy(await echo(ws, key))
      await closeClient(ws)
      if (round === 0) homes.set(key, name)
      else t.equal(name, homes.get(key), `${key} again on ${String(homes.get(key))}`)
    }
  }
  t.ok(new Set(homes.values()).size >= 2, `the keys spread over the replicas (${JSON.stringify(tally([...homes.values()]))})`)
})

t.test('least-request: a replica holding open tunnels gets the next upgrades less', async (t) => {
  const [busy, fresh] = await wsReplicas(t, ['busy', 'fresh'])
  let set = [busy.url]
  const changes = subscribe<UpstreamSetMessage>(t, CHANNELS.upstreamSet)
  const pools = capturePools(t)
  const { url } = await proxyApp(t, { upstream: [busy.url], resolve: { replicas: async () => set, interval: 50 } })
  const first = await openEach(t, url, Array.from({ length: 20 }, (_, i) => `/held/${i}`))
  t.same(tally(first.served), { busy: 20 })
  t.same(inflight(pools[0]), { [busy.origin]: 20 }, 'twenty open tunnels in flight on busy')

  const known = changes.messages.length
  set = [busy.url, fresh.url]
  await within(PROMPTLY, changes.waitFor(known + 1), 'the replica set changed')
  const next = await openEach(t, url, Array.from({ length: 20 }, (_, i) => `/next/${i}`))
  const counts = tally(next.served)
  // Power of two choices with 20 against at most 19: fresh wins each pair it is in (7 in 8).
  t.ok((counts.fresh ?? 0) >= 12, `the next 20 went mostly to fresh (${JSON.stringify(counts)})`)
  t.same(inflight(pools[0]), { [busy.origin]: 20 + (counts.busy ?? 0), [fresh.origin]: counts.fresh ?? 0 }, 'every open tunnel in flight on its replica')
  for (const ws of first.clients) await closeClient(ws)
  t.equal(inflight(pools[0])[busy.origin], counts.busy ?? 0, 'the closed tunnels left busy')
  for (const ws of next.clients) await closeClient(ws)
  await noneInFlight(pools[0], 'all tunnels closed')
})

t.test('tunnel:closed names the replica that served; nothing stays in flight, also when the client leaves mid-handshake or the handshake times out', async (t) => {
  const replicas = await wsReplicas(t, ['a', 'b'])
  const closed = subscribe<TunnelClosedMessage>(t, CHANNELS.tunnelClosed)
  const pools = capturePools(t)
  const { url } = await proxyApp(t, { upstream: replicas.map(r => r.url), balance: 'round-robin' })
  const paths = Array.from({ length: 4 }, (_, i) => `/t/${i}`)
  const { clients, served } = await openEach(t, url, paths)
  t.same(tally(served), { a: 2, b: 2 })
  for (const ws of clients) await closeClient(ws)
  await within(PROMPTLY, closed.waitFor(4), 'four tunnel:closed messages')
  const named = byName(replicas)
  for (const message of closed.messages) {
    const i = paths.indexOf(message.request.url.slice('/ws'.length))
    t.equal(message.upstream, named[served[i]].origin, `${message.request.url}: tunnel:closed names ${served[i]}'s address`)
  }
  await noneInFlight(pools[0], 'after the tunnels closed')

  // Replicas that take the connection and never answer the handshake.
  const silent = [await rawUpstream(t), await rawUpstream(t)]
  const pending = capturePools(t)
  const ejected = subscribe<UpstreamEjectedMessage>(t, CHANNELS.upstreamEjected)
  const silentOrigins = silent.map(s => `http://127.0.0.1:${s.port}`)
  const app = await proxyApp(t, { upstream: silentOrigins, wsHandshakeTimeout: 300, prefix: '/silent', outlierDetection: { consecutiveFailures: 1 } })
  const counted = (): number => Object.values(inflight(pending[0])).reduce((sum, n) => sum + n, 0)
  const leaving = await rawClient(t, app.port)
  leaving.socket.write(upgradeRequest('/silent/x'))
  await until(PROMPTLY, () => silent[0].connections.length + silent[1].connections.length === 1, 'a replica got the handshake')
  t.equal(counted(), 1, 'the handshake in flight on its replica')
  leaving.socket.destroy()
  await until(PROMPTLY, () => counted() === 0, 'the handshake left by its client is no longer in flight')
  t.same(ejected.messages, [], 'a client leaving is no failure of the replica')

  const waiting = await rawClient(t, app.port)
  waiting.socket.write(upgradeRequest('/silent/y'))
  await within(PROMPTLY, waiting.closed, 'the answer to the handshake that timed out')
  t.equal(parseReply(waiting.received()).status, 504, 'the client got a 504')
  t.equal(counted(), 0, 'the timed-out handshake is no longer in flight')
  const took = silent.findIndex(s => s.connections.some(c => c.received().toString('latin1').startsWith('GET /y')))
  t.same(ejected.messages.map(m => m.upstream), [silentOrigins[took]], 'the timeout counts as the failure of the replica that took the handshake')
})

t.test('a replica that leaves the set keeps its open tunnels until they end', async (t) => {
  const replicas = await wsReplicas(t, ['a', 'b'])
  const [a, b] = replicas
  let set = [a.url, b.url]
  const changes = subscribe<UpstreamSetMessage>(t, CHANNELS.upstreamSet)
  const pools = capturePools(t)
  const { url } = await proxyApp(t, { upstream: set, balance: 'round-robin', resolve: { replicas: async () => set, interval: 50 } })
  const { clients, served } = await openEach(t, url, ['/l/0', '/l/1'])
  t.same(served, ['a', 'b'])
  const known = changes.messages.length
  set = [b.url]
  await within(PROMPTLY, changes.waitFor(known + 1), 'the replica set changed')
  t.same(pools[0].snapshot().find(r => r.origin === a.origin), { origin: a.origin, host: `127.0.0.1:${a.port}`, state: 'leaving', inflight: 1, served: 1, ejections: 0 }, 'a is leaving, its tunnel still in flight')
  t.equal(await echo(clients[0], 'still'), 'a:still', 'the tunnel on the replica that left still relays')
  const later = await openEach(t, url, ['/l/2', '/l/3'])
  t.same(later.served, ['b', 'b'], 'new upgrades go to the replicas in the set')
  await closeClient(clients[0])
  await until(PROMPTLY, () => pools[0].snapshot().every(r => r.origin !== a.origin), 'a gone from the pool once its tunnel ended')
  await until(PROMPTLY, () => a.open() === 0, 'a\'s WebSocket closed')
  for (const ws of [clients[1], ...later.clients]) await closeClient(ws)
  await noneInFlight(pools[0], 'all tunnels closed')
})

for (const mode of H2_MODES) {
  t.test(`${mode}: an HTTP/2 WebSocket (RFC 8441) skips a stopped replica too, and its tunnel counts in flight`, async (t) => {
    const replicas = await wsReplicas(t, ['a', 'b', 'c'])
    const [a, b, c] = replicas
    await b.stop()
    const pools = capturePools(t)
    // The stopped one first: its URL names the pool, and without a pool every upgrade went there.
    const { port } = await h2ProxyApp(t, mode, { upstream: [b.url, a.url, c.url], balance: 'round-robin', outlierDetection: false })
    const session = await h2ConnectSession(t, mode, port)
    const sockets: WebSocket[] = []
    const served: string[] = []
    for (let i = 0; i < 6; i++) {
      const { ws } = await within(PROMPTLY, openH2WebSocket(session, `/ws/h2/${i}`), `HTTP/2 WebSocket ${i} opened`)
      sockets.push(ws)
      served.push(servedBy(await echo(ws, `h2-${i}`)))
    }
    t.notOk(served.includes('b'), `none on the stopped replica (${JSON.stringify(tally(served))})`)
    t.ok(served.includes('a') && served.includes('c'), 'both live replicas took some')
    t.equal(a.handshakes.length + c.handshakes.length, 6, 'each handshake reached a live replica once')
    t.same(inflight(pools[0]), { [a.origin]: a.open(), [b.origin]: 0, [c.origin]: c.open() }, 'each open tunnel in flight on its replica')
    // Closed from the replicas' side: the client-side close of HTTP/2 tunnels is
    // test/websocket/h2-tunnel.test.ts's.
    const closes = sockets.map(async ws => await within(PROMPTLY, once(ws, 'close'), 'the client\'s WebSocket closed'))
    a.closeAll()
    c.closeAll()
    await Promise.all(closes)
    await noneInFlight(pools[0], 'the HTTP/2 tunnels closed')
  })
}
