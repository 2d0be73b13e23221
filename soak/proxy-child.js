// The one proxy process the soak runs against (forked by soak/run.js with --expose-gc): the deadline
// plugin and three proxy registrations in front of UPSTREAM:
//   /api/*    plain proxy with WebSocket pass-through, deadline defaults
//   /short/*  300 ms to the response headers, for 504s
//   /idle/*   400 ms between body writes, for streams cut after their headers (kept apart from
//             /short: on a loaded machine a head can take 300 ms, and that expiry is a 504)
//   /held/*   a slow "auth" preHandler that tells the runner (IPC 'held') it holds the request and
//             waits until the client leaves, so the client aborts before anything goes upstream
// Besides bench/child.js's 'stop', it answers 'stats': what the process holds after a full GC.
// SOAK_HEAP_SNAPSHOTS=<dir> also writes a heap snapshot there at each 'stats', to diff a leak.
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8'
import Fastify from 'fastify'
import { deadline, proxy } from 'fastify-streamline'
import { serve, fastifyServer } from '../bench/child.js'

const upstream = process.env.UPSTREAM
const app = Fastify({ logger: false })

await app.register(deadline, { timeout: 10_000, streamIdleTimeout: 10_000 })
// The drain phase's bound; with several registrations the longest drainTimeout applies, so all have it.
const drainTimeout = Number(process.env.DRAIN_TIMEOUT)

await app.register(proxy, { upstream, prefix: '/api', websocket: true, drainTimeout })
await app.register(proxy, { upstream, prefix: '/short', config: { deadline: { timeout: 300 } }, drainTimeout })
await app.register(proxy, { upstream, prefix: '/idle', config: { deadline: { streamIdleTimeout: 400 } }, drainTimeout })
await app.register(proxy, {
  upstream,
  prefix: '/held',
  drainTimeout,
  preHandler: async (request) => {
    process.send({ type: 'held', id: request.headers['x-soak-id'] })
    // capped, so that a runner bug cannot hold a request (and its socket) forever
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 5000)
      request.raw.socket.once('close', () => {
        clearTimeout(timer)
        resolve()
      })
    })
  }
})

function count (names) {
  const counts = {}
  for (const name of names) counts[name] = (counts[name] ?? 0) + 1
  return counts
}

/** Used heap after a full GC, outside V8's code spaces, and the code spaces' size. */
async function heap () {
  // a few collections, a turn of the loop apart, so weak callbacks and finalizers have run
  for (let i = 0; i < 3; i++) {
    globalThis.gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  const spaces = getHeapSpaceStatistics()
  const size = (code) => spaces.filter((space) => space.space_name.startsWith('code_') === code)
    .reduce((sum, space) => sum + space.space_used_size, 0)
  return { heapUsed: size(false), codeBytes: size(true) }
}

async function stats () {
  // The least of five: an idle process's old space swings by ~250 KB between two full GCs
  // (V8's own caches, e.g. the number-string cache, are dropped and refilled), about the 2 %
  // tolerance; a leak is in every sample. The code spaces move on their own too: apart.
  let least = { heapUsed: Infinity, codeBytes: 0 }
  for (let i = 0; i < 5; i++) {
    const sample = await heap()
    if (sample.heapUsed < least.heapUsed) least = sample
  }
  if (process.env.SOAK_HEAP_SNAPSHOTS) writeHeapSnapshot(`${process.env.SOAK_HEAP_SNAPSHOTS}/soak-${Date.now()}.heapsnapshot`)
  const connections = await new Promise((resolve, reject) => {
    app.server.getConnections((err, n) => err ? reject(err) : resolve(n))
  })
  return { ...least, handles: count(process.getActiveResourcesInfo()), connections }
}

process.on('message', async (message) => {
  if (message.type === 'stats') process.send({ type: 'stats', ...await stats() })
  // The graceful close an orchestrator's SIGTERM would start (bench/child.js's 'stop' closes every connection first).
  if (message.type === 'drain') {
    await app.close()
    process.exit(0)
  }
})

await serve(...fastifyServer(app))
