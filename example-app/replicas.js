// The live service as a pool of replicas: live-1, live-2... each a server of its own on its own
// port, as separate machines would be. The page's replicas card stops and starts them (through
// the loopback-only routes below) so that a user can watch failover, ejection and return.
import { setTimeout as delay } from 'node:timers/promises'
import { startLive } from './upstream/live.js'

/**
 * Starts `count` replicas: live-n on `port + 10 × (n − 1)` (3001, 3011, 3021 by default), or on
 * free ports when `port` is 0. A stopped replica restarts on the port it had: the pool knows it
 * by that address.
 */
export async function startLiveReplicas ({ host, port, count, tickMs, log }) {
  const replicas = []
  const start = async (replica) => {
    replica.service = await startLive({ host, port: replica.port, tickMs, log, name: replica.name })
    replica.port = replica.service.app.server.address().port
  }
  try {
    for (let n = 1; n <= count; n++) {
      const replica = { name: `live-${n}`, port: port === 0 ? 0 : port + 10 * (n - 1), service: null, busy: false }
      await start(replica)
      replica.url = `http://${host}:${replica.port}`
      replicas.push(replica)
    }
  } catch (err) {
    await Promise.all(replicas.map(replica => replica.service.app.close()))
    throw err
  }
  return controls(replicas, start, log)
}

function controls (replicas, start, log) {
  const find = (name) => replicas.find(replica => replica.name === name)
  // One change at a time per replica: a second click while one is under way is refused.
  const change = async (name, running, act) => {
    const replica = find(name)
    if (replica === undefined) return 'unknown'
    if (replica.busy) return 'busy'
    if ((replica.service !== null) === running) return 'unchanged'
    replica.busy = true
    try {
      await act(replica)
    } finally {
      replica.busy = false
    }
    log(`[replicas] ${name} ${running ? 'started' : 'stopped'}`)
    return 'done'
  }
  return {
    urls: replicas.map(replica => replica.url),
    /** [origin, name] pairs: the metrics label a replica by its name. */
    names: replicas.map(replica => [new URL(replica.url).origin, replica.name]),
    list: () => replicas.map(({ name, service }) => ({ name, running: service !== null })),
    // close() ends the replica's event streams and WebSockets cleanly and refuses new connections.
    stop: (name) => change(name, false, stopReplica),
    start: (name) => change(name, true, start),
    rollingRestart: rollingRestart(replicas, change, start, log),
    close: () => Promise.all(replicas.map(replica => replica.service?.app.close()))
  }
}

// A deploy's rolling restart, one replica at a time: stopped, down this long, started, and
// answering its health check before the next one goes.
const RESTART_PAUSE_MS = 300
const ANSWER_WITHIN_MS = 10_000

function rollingRestart (replicas, change, start, log) {
  let rolling = false
  return async () => {
    if (rolling) return 'busy'
    rolling = true
    try {
      for (const replica of replicas) {
        if (replica.service === null) continue // stopped from its button: left as it is
        if (await change(replica.name, false, stopReplica) === 'busy') return 'busy'
        await delay(RESTART_PAUSE_MS)
        await change(replica.name, true, start)
        await answering(replica.url)
      }
      log('[replicas] rolling restart done')
      return 'done'
    } finally {
      rolling = false
    }
  }
}

async function stopReplica (replica) {
  const { app } = replica.service
  replica.service = null
  await app.close()
}

// Started means listening; this waits for the answer itself, bounded.
async function answering (url) {
  const until = Date.now() + ANSWER_WITHIN_MS
  for (;;) {
    const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) }).then(res => res.ok, () => false)
    if (ok) return
    if (Date.now() > until) throw new Error(`${url} did not answer /healthz within ${ANSWER_WITHIN_MS} ms`)
    await delay(50)
  }
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/

/**
 * Whether a connection comes from this machine. The socket's own peer address, never a header:
 * X-Forwarded-For is whatever the client wrote, and the ingress does not set `trustProxy`.
 */
export function isLoopback (address) {
  return typeof address === 'string' && LOOPBACK.test(address)
}

/**
 * GET /demo/replicas, POST /demo/replicas/:name/stop and /start, answered only to a connection
 * from this machine (403 otherwise): stopping a replica is a demo's button, not an API to expose.
 */
export async function replicaRoutes (app, { replicas }) {
  const opts = { config: { deadline: false }, onRequest: loopbackOnly }
  app.get('/demo/replicas', opts, async () => replicas.list())
  // The SSE card's button: answers once every replica was restarted and answers again.
  app.post('/demo/replicas/rolling-restart', opts, async (request, reply) => {
    if (await replicas.rollingRestart() === 'busy') return reply.code(409).send({ statusCode: 409, code: 'DEMO_REPLICA_BUSY', error: 'Conflict', message: 'a replica is starting or stopping' })
    return replicas.list()
  })
  for (const action of ['stop', 'start']) {
    app.post(`/demo/replicas/:name/${action}`, opts, async (request, reply) => {
      const outcome = await replicas[action](request.params.name)
      if (outcome === 'unknown') return reply.code(404).send({ statusCode: 404, code: 'DEMO_NO_SUCH_REPLICA', error: 'Not Found', message: `no replica named "${request.params.name}"` })
      if (outcome === 'busy') return reply.code(409).send({ statusCode: 409, code: 'DEMO_REPLICA_BUSY', error: 'Conflict', message: 'that replica is starting or stopping' })
      return replicas.list()
    })
  }
}

async function loopbackOnly (request, reply) {
  if (isLoopback(request.socket.remoteAddress)) return
  reply.code(403).send({ statusCode: 403, code: 'DEMO_LOOPBACK_ONLY', error: 'Forbidden', message: 'the replica controls answer connections from this machine only' })
  return reply
}
