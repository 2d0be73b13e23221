// Nothing outlives a tunnel: 1,000 tunnels each killed by a client reset, an upstream reset
// and a close in the middle of the handshake leave file descriptors and handles at baseline.
import net from 'node:net'
import { once } from 'node:events'
import t from 'tap'
import deadline from '../../plugins/deadline/index.js'
import { gone, handingUpstream, proxyApp, upgradeRequest, type HandingUpstream } from '../helpers/ws-servers.js'
import { fds, handles, settled } from '../helpers/resources.js'
import { within } from '../helpers/bounded.js'

// One tunnel's whole life, among 50 at once on a loaded machine: typically a few ms.
const ONE_TUNNEL = 10_000

const ROUNDS = 1000
const CONCURRENCY = 50

type Kill = 'client-reset' | 'upstream-reset' | 'mid-handshake'

async function oneTunnel (proxyPort: number, up: HandingUpstream, kill: Kill): Promise<void> {
  const client = net.connect(proxyPort, '127.0.0.1')
  client.on('error', () => {})
  await once(client, 'connect')
  const upstreamSocket = up.next()
  client.write(upgradeRequest(kill === 'mid-handshake' ? '/ws/silent' : '/ws/tunnel'))
  const upSocket = await upstreamSocket
  if (kill !== 'mid-handshake') await once(client, 'data')
  if (kill === 'upstream-reset') {
    upSocket.resetAndDestroy()
    if (!client.destroyed) await once(client, 'close')
  } else {
    client.resetAndDestroy()
    await gone(upSocket)
    upSocket.destroy()
  }
}

async function run (proxyPort: number, up: HandingUpstream, kill: Kill, rounds: number): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < rounds) {
      next++
      await within(ONE_TUNNEL, oneTunnel(proxyPort, up, kill), `a tunnel killed by ${kill} ended on both sides`)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
}

t.test(`${ROUNDS} tunnels per way of dying leave fds and handles at baseline`, async (t) => {
  const up = await handingUpstream(t)
  const { app, port } = await proxyApp(t, {
    upstream: `http://127.0.0.1:${up.port}`,
    before: async (app) => { await app.register(deadline, { timeout: 10_000 }) }
  })
  // Without a deadline the handshake has its own timer (wsHandshakeTimeout): it must go too.
  const plain = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}` })
  const connections = async (): Promise<number> => await new Promise((resolve, reject) => {
    app.server.getConnections((err, count) => err === null ? resolve(count) : reject(err))
  })
  for (const kill of ['client-reset', 'upstream-reset', 'mid-handshake'] as const) await run(port, up, kill, 5)
  await run(plain.port, up, 'mid-handshake', 5)
  await settled(() => up.open.size === 0)
  const baseFds = fds()
  const baseHandles = handles()

  for (const kill of ['client-reset', 'upstream-reset', 'mid-handshake'] as const) {
    const started = Date.now()
    await run(port, up, kill, ROUNDS)
    await settled(() => up.open.size === 0)
    t.equal(up.open.size, 0, `${kill}: every upstream connection closed (${ROUNDS} in ${Date.now() - started} ms)`)
  }
  await run(plain.port, up, 'mid-handshake', ROUNDS / 5)
  await settled(() => up.open.size === 0)
  t.equal(up.open.size, 0, `mid-handshake without a deadline: every upstream connection closed (${ROUNDS / 5})`)
  let proxyConnections = await connections()
  const until = Date.now() + 5000
  while (proxyConnections > 0 && Date.now() < until) {
    await new Promise(resolve => setTimeout(resolve, 20))
    proxyConnections = await connections()
  }
  t.equal(proxyConnections, 0, 'the proxy holds no client connection')
  await settled(() => fds() <= baseFds)
  t.ok(fds() <= baseFds, `file descriptors back to baseline (${fds()} vs ${baseFds})`)
  const after = handles()
  for (const name of new Set([...Object.keys(baseHandles), ...Object.keys(after)])) {
    t.ok((after[name] ?? 0) <= (baseHandles[name] ?? 0), `${name}: ${after[name] ?? 0} active (baseline ${baseHandles[name] ?? 0})`)
  }
})
