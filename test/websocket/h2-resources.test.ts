// Nothing outlives an HTTP/2 WebSocket: 500 extended CONNECT tunnels per way of dying (client
// RST_STREAM, upstream reset, RST during the handshake, upstream refusal), each way on its own
// session, leave upstream connections, file descriptors, handles and the sessions' listeners at
// baseline. One session per way and 500, not 1,000: nghttp2's rapid-reset guard (CVE-2023-44487)
// ends a session whose client has reset about 1,000 streams in a burst, as this test would.
import http2 from 'node:http2'
import t from 'tap'
import { extendedConnect, h2ConnectSession, h2ProxyApp } from '../helpers/h2-websocket.js'
import { gone, handingUpstream, type HandingUpstream } from '../helpers/ws-servers.js'
import { fds, handles, settled } from '../helpers/resources.js'
import { within } from '../helpers/bounded.js'

// One tunnel's whole life, among 50 at once on a loaded machine: typically a few ms.
const ONE_TUNNEL = 10_000

const ROUNDS = 500
const CONCURRENCY = 50
const { NGHTTP2_CANCEL } = http2.constants

type Kill = 'client-reset' | 'upstream-reset' | 'mid-handshake' | 'refused'

const PATHS: Record<Kill, string> = { 'client-reset': '/ws/tunnel', 'upstream-reset': '/ws/tunnel', 'mid-handshake': '/ws/silent', refused: '/ws/refused' }

async function oneTunnel (session: http2.ClientHttp2Session, up: HandingUpstream, kill: Kill): Promise<void> {
  const upstreamSocket = up.next()
  const request = extendedConnect(session, PATHS[kill])
  const upSocket = await upstreamSocket
  if (kill === 'refused') {
    await request.body()
    return
  }
  if (kill !== 'mid-handshake') await request.response
  if (kill === 'upstream-reset') {
    upSocket.resetAndDestroy()
    await request.closed
  } else {
    request.stream.close(NGHTTP2_CANCEL)
    await gone(upSocket)
    upSocket.destroy()
  }
}

async function run (session: http2.ClientHttp2Session, up: HandingUpstream, kill: Kill, rounds: number): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < rounds) {
      next++
      await within(ONE_TUNNEL, oneTunnel(session, up, kill), `a tunnel killed by ${kill} ended on both sides`)
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
}

function listeners (emitter: NodeJS.EventEmitter): number {
  let count = 0
  for (const name of emitter.eventNames()) count += emitter.listenerCount(name)
  return count
}

const KILLS: Kill[] = ['client-reset', 'upstream-reset', 'mid-handshake', 'refused']

t.test(`${ROUNDS} h2 tunnels per way of dying leave upstream connections, fds, handles and listeners at baseline`, async (t) => {
  const up = await handingUpstream(t)
  const serverSessions: http2.ServerHttp2Session[] = []
  const { app, port } = await h2ProxyApp(t, 'h2c', { upstream: `http://127.0.0.1:${up.port}` })
  app.server.on('session', (session: http2.ServerHttp2Session) => serverSessions.push(session))
  const sessions: http2.ClientHttp2Session[] = []
  for (const kill of KILLS) {
    const session = await h2ConnectSession(t, 'h2c', port)
    sessions.push(session)
    await run(session, up, kill, 5)
  }
  await settled(() => up.open.size === 0)
  const baseFds = fds()
  const baseHandles = handles()
  const sessionListeners = (): number[] => serverSessions.flatMap(session => [listeners(session), listeners(session.socket)])
  const baseListeners = { sessions: sessionListeners(), server: listeners(app.server) }

  for (const [i, kill] of KILLS.entries()) {
    const started = Date.now()
    await run(sessions[i], up, kill, ROUNDS)
    await settled(() => up.open.size === 0)
    t.equal(up.open.size, 0, `${kill}: every upstream connection closed (${ROUNDS} in ${Date.now() - started} ms)`)
    t.notOk(sessions[i].destroyed, `${kill}: the session is still open`)
  }
  t.equal(serverSessions.length, KILLS.length, 'one server session per way')
  await settled(() => fds() <= baseFds)
  t.ok(fds() <= baseFds, `file descriptors back to baseline (${fds()} vs ${baseFds})`)
  const after = handles()
  for (const name of new Set([...Object.keys(baseHandles), ...Object.keys(after)])) {
    t.ok((after[name] ?? 0) <= (baseHandles[name] ?? 0), `${name}: ${after[name] ?? 0} active (baseline ${baseHandles[name] ?? 0})`)
  }
  t.same({ sessions: sessionListeners(), server: listeners(app.server) }, baseListeners,
    'no listener left on the server, its sessions or their sockets')
})
