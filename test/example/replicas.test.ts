// The example's live service as a pool of three replicas: one stopped through the page's
// loopback-only route while GETs go on through the ingress. No request fails (the ingress fails
// over), /metrics shows the replica ejected, and after a start it serves again.
import { networkInterfaces } from 'node:os'
import Fastify from 'fastify'
import t from 'tap'
import { Agent, request } from 'undici'
import { isLoopback, replicaRoutes } from '../../example-app/replicas.js'
import { startExample } from '../helpers/example-app.js'

// Bounds every wait for a head or a body (undici's own timeouts are 5 minutes).
const agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 })
t.teardown(async () => await agent.close())

interface Answer { status: number, replica: string, header: unknown }

async function whoami (ingress: string): Promise<Answer> {
  const response = await request(`${ingress}/live/whoami`, { dispatcher: agent })
  const body = await response.body.json() as { replica: string }
  return { status: response.statusCode, replica: body.replica, header: response.headers['x-replica'] }
}

async function gauge (ingress: string, name: string, replica: string): Promise<number | null> {
  const text = await (await request(`${ingress}/metrics`, { dispatcher: agent })).body.text()
  const match = new RegExp(`^${name}\\{replica="${replica}"\\} (\\d+)$`, 'm').exec(text)
  return match === null ? null : Number(match[1])
}

/** GETs one after another until `done` says so after one of them; at most `most` GETs. */
async function getUntil (ingress: string, most: number, done: (answer: Answer) => Promise<boolean> | boolean, missing: string): Promise<Answer[]> {
  const answers: Answer[] = []
  for (let i = 0; i < most; i++) {
    const answer = await whoami(ingress)
    answers.push(answer)
    if (await done(answer)) return answers
  }
  throw new Error(`after ${most} GETs through the pool: ${missing}`)
}

async function post (ingress: string, path: string): Promise<{ status: number, body: unknown }> {
  const response = await request(`${ingress}${path}`, { method: 'POST', dispatcher: agent })
  return { status: response.statusCode, body: await response.body.json() }
}

t.test('a stopped replica: no GET fails, it is ejected, and after a start it serves again', async (t) => {
  const app = await startExample(t)
  const warm: Answer[] = []
  for (let i = 0; i < 30; i++) warm.push(await whoami(app.ingress))
  t.same(new Set(warm.map(a => a.status)), new Set([200]), 'all answered 200')
  t.same([...new Set(warm.map(a => a.replica))].sort(), ['live-1', 'live-2', 'live-3'], 'all three replicas served')
  t.same(warm.filter(a => a.header !== a.replica), [], 'x-replica names the replica that answered')

  t.equal((await post(app.ingress, '/demo/replicas/live-9/stop')).status, 404, 'no replica live-9')
  const stopped = await post(app.ingress, '/demo/replicas/live-2/stop')
  t.equal(stopped.status, 200)
  t.same(stopped.body, [{ name: 'live-1', running: true }, { name: 'live-2', running: false }, { name: 'live-3', running: true }])
  await app.lines.waitFor(/^\[replicas\] live-2 stopped$/)

  // Each GET the balancer aims at live-2 is refused a connection and goes to another replica.
  const during = await getUntil(app.ingress, 300, async (_answer) => await gauge(app.ingress, 'ingress_replica_ejected', 'live-2') === 1,
    'live-2 never showed as ejected in /metrics')
  t.same(during.filter(a => a.status !== 200), [], `none of the ${during.length} GETs while live-2 was down failed`)
  t.same(during.filter(a => a.replica === 'live-2'), [], 'none was answered by the stopped replica')
  t.equal(await gauge(app.ingress, 'ingress_replica_ejections_total', 'live-2'), 1, 'one ejection counted')
  t.equal(await gauge(app.ingress, 'ingress_replica_ejected', 'live-1'), 0, 'live-1 in rotation')
  t.equal(await gauge(app.ingress, 'ingress_replica_ejected', 'live-3'), 0, 'live-3 in rotation')

  const started = await post(app.ingress, '/demo/replicas/live-2/start')
  t.equal(started.status, 200)
  t.same(started.body, [{ name: 'live-1', running: true }, { name: 'live-2', running: true }, { name: 'live-3', running: true }])
  // Back after its ejection (5 s, or 10 s if it was ejected again on probation) and, if the
  // health check had failed it, two passing checks 2 s apart. Paced, so that the loop covers that.
  const after = await getUntil(app.ingress, 400, async (answer) => {
    await new Promise(resolve => setTimeout(resolve, 100))
    return answer.replica === 'live-2'
  }, 'live-2 never served again after its restart')
  t.same(after.filter(a => a.status !== 200), [], `none of the ${after.length} GETs after the restart failed`)
  t.equal(await gauge(app.ingress, 'ingress_replica_ejected', 'live-2'), 0, '/metrics: no longer ejected')
  t.equal(await gauge(app.ingress, 'ingress_replica_healthy', 'live-2'), 1, '/metrics: healthy')
  t.equal((await app.stop()).code, 0)
})

t.test('the replica controls answer a connection from this machine only, whatever X-Forwarded-For says', async (t) => {
  t.ok(isLoopback('127.0.0.1') && isLoopback('::1') && isLoopback('::ffff:127.0.0.1') && isLoopback('127.1.2.3'), 'loopback addresses')
  t.notOk(isLoopback('192.0.2.2') || isLoopback('::ffff:10.0.0.1') || isLoopback('fe80::1') || isLoopback(undefined), 'others')
  // A real second address of this machine: a connection to it comes from it, not from loopback.
  const outside = Object.values(networkInterfaces()).flat().find(address => address !== undefined && !address.internal && address.family === 'IPv4')
  t.ok(outside, 'this machine has a non-loopback IPv4 address to connect from')
  if (outside === undefined) return
  const calls: string[] = []
  const app = Fastify()
  await app.register(replicaRoutes, {
    replicas: {
      list: () => [{ name: 'live-1', running: true }],
      stop: async (name) => { calls.push(`stop ${name}`); return 'done' },
      start: async (name) => { calls.push(`start ${name}`); return 'done' },
      rollingRestart: async () => { calls.push('rolling restart'); return 'done' }
    }
  })
  await app.listen({ host: '0.0.0.0', port: 0 })
  t.teardown(async () => await app.close())
  const port = (app.server.address() as { port: number }).port
  const send = async (host: string, method: 'GET' | 'POST', path: string, headers = {}): Promise<{ status: number, body: { code?: string } }> => {
    const response = await request(`http://${host}:${port}${path}`, { method, headers, dispatcher: agent })
    return { status: response.statusCode, body: await response.body.json() as { code?: string } }
  }
  const spoofed = { 'x-forwarded-for': '127.0.0.1', forwarded: 'for=127.0.0.1', 'x-real-ip': '127.0.0.1' }
  for (const [method, path] of [['POST', '/demo/replicas/live-1/stop'], ['POST', '/demo/replicas/live-1/start'], ['POST', '/demo/replicas/rolling-restart'], ['GET', '/demo/replicas']] as const) {
    const refused = await send(outside.address, method, path, spoofed)
    t.equal(refused.status, 403, `${method} ${path} from ${outside.address} (X-Forwarded-For: 127.0.0.1) refused`)
    t.equal(refused.body.code, 'DEMO_LOOPBACK_ONLY')
  }
  t.same(calls, [], 'no replica was stopped or started')
  t.equal((await send('127.0.0.1', 'POST', '/demo/replicas/live-1/stop')).status, 200, 'from loopback: done')
  t.same(calls, ['stop live-1'])
})
