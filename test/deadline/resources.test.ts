// Nothing outlives its request: timers, listeners and sockets are gone when it is.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { Pool } from 'undici'
import Fastify from 'fastify'
import deadline from '../../plugins/deadline/index.js'
import { deadlineApp, listen } from '../helpers/deadline-app.js'
import { receiveWithin, within } from '../helpers/bounded.js'

function timers (): number {
  return process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length
}

t.test('after 10,000 requests the active handles are back to baseline', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 100, streamIdleTimeout: 200 })
  app.get('/fast', async () => 'ok')
  app.get('/slow', async (req) => { await new Promise((resolve) => req.deadline.signal.addEventListener('abort', resolve)); return 'late' })
  app.get('/stream', (_req, reply) => { reply.type('text/event-stream').send('data: one\n\n') })
  const base = await listen(app)
  await sleep(50)
  const baseline = { timers: timers(), handles: process.getActiveResourcesInfo().length }
  const pool = new Pool(base, { connections: 20, pipelining: 1 })
  const statuses: Record<number, number> = {}
  const paths = ['/fast', '/fast', '/stream', '/fast']
  for (let batch = 0; batch < 100; batch++) {
    await within(30_000, Promise.all(Array.from({ length: 100 }, async (_, i) => {
      const path = batch % 25 === 0 && i < 10 ? '/slow' : paths[i % paths.length]
      const res = await pool.request({ path, method: 'GET' })
      await res.body.dump()
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
    })), `the answers of batch ${batch}`)
  }
  t.equal(statuses[504], 40, 'the slow requests expired')
  t.equal(statuses[200], 9960)
  await within(10_000, pool.close(), 'the client pool closing')
  const connections = await within(10_000, new Promise<number>((resolve) => {
    const poll = (): void => {
      app.server.getConnections((_err, count) => { if (count === 0) resolve(count); else setTimeout(poll, 20) })
    }
    poll()
  }), 'the close of every server socket')
  t.equal(connections, 0, 'every server socket is closed')
  await sleep(50)
  t.equal(timers(), baseline.timers, 'no deadline timer left behind')
  t.ok(process.getActiveResourcesInfo().length <= baseline.handles, 'handles back to baseline')
  t.equal(app.server.listenerCount('request'), 1)
})

// With `logger: false` every request shares Fastify's one null logger (its child() returns
// itself). An expiry must not patch it: a wrapper per expiry would chain onto the app-wide
// logger forever (found by `npm run soak`: one closure chain link per expiry, never freed).
t.test('expiries leave a shared logger as it was (logger: false)', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(deadline, { timeout: 50 })
  t.teardown(() => app.close())
  let aborted = 0
  app.get('/slow', async (req) => {
    await new Promise((_resolve, reject) => req.deadline.signal.addEventListener('abort', () => { aborted++; reject(req.deadline.signal.reason) }))
  })
  const base = await listen(app)
  const { error, child } = app.log
  for (let i = 0; i < 20; i++) {
    const res = await receiveWithin(`${base}/slow`)
    t.equal(res.status, 504)
    t.equal(JSON.parse(res.body).code, 'FST_STREAMLINE_DEADLINE_EXCEEDED')
  }
  t.equal(aborted, 20, 'every handler saw its signal abort')
  t.equal(app.log.error, error, 'the shared logger\'s error is the one it had')
  t.equal(app.log.child({}), app.log, 'and child() still returns that same logger')
  t.equal(child, app.log.child)
  t.equal(Object.keys(app.log).includes('error'), false, 'no own error property was added')
})
