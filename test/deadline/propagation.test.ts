// Budget propagation: what goes upstream, and what an incoming budget does when trusted.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { deadlineHeaders } from '../../plugins/deadline/index.js'
import { deadlineApp, listen } from '../helpers/deadline-app.js'
import { receiveWithin } from '../helpers/bounded.js'

t.test('deadlineHeaders gives the remaining budget in the configured header, or grpc-timeout', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 1000, propagationHeader: 'X-Budget-Ms' })
  app.get('/headers', async (req) => { await sleep(200); return deadlineHeaders(req) })
  app.post('/grpc', async (req) => deadlineHeaders(req))
  app.addContentTypeParser('application/grpc+proto', (_req, _payload, done) => done(null))
  app.get('/out', { config: { deadline: false } }, async (req) => deadlineHeaders(req))
  app.get('/stream', { config: { deadline: { streaming: true, streamIdleTimeout: 5000 } } }, async (req) => deadlineHeaders(req))
  const base = await listen(app)
  const headers = JSON.parse((await receiveWithin(`${base}/headers`)).body)
  t.same(Object.keys(headers), ['x-budget-ms'])
  const ms = Number(headers['x-budget-ms'])
  t.ok(ms <= 800 && ms > 0, `at most 800 ms left after a 200 ms wait (${ms})`)
  const grpc = JSON.parse((await receiveWithin(`${base}/grpc`, { method: 'POST', headers: { 'content-type': 'application/grpc+proto' } }, '')).body)
  t.match(grpc, { 'grpc-timeout': /^\d{1,8}m$/ })
  t.ok(Number(grpc['grpc-timeout'].slice(0, -1)) <= 1000)
  t.same(JSON.parse((await receiveWithin(`${base}/out`)).body), {}, 'no header for an opted-out route')
  const stream = Number(JSON.parse((await receiveWithin(`${base}/stream`)).body)['x-budget-ms'])
  t.ok(stream > 4000 && stream <= 5000, 'a streaming route passes its first idle period on')
})

t.test('an incoming budget is ignored unless trusted', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 5000 })
  app.get('/work', async (req) => { await sleep(300); return { remaining: req.deadline.remaining() } })
  const base = await listen(app)
  const res = await receiveWithin(`${base}/work`, { headers: { 'x-request-timeout-ms': '50' } })
  t.equal(res.status, 200)
  t.ok(JSON.parse(res.body).remaining > 2000, 'the 50 ms budget was not applied')
})

t.test('a trusted incoming budget shortens the deadline, never lengthens it; malformed values are ignored', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 1500, trustIncoming: (req) => req.headers['x-trusted'] === 'yes' })
  app.get('/work', async (req) => {
    await sleep(req.headers['x-slow'] === 'yes' ? 1000 : 300)
    return { expiresIn: req.deadline.expiresAt - Date.now() }
  })
  const base = await listen(app)
  const trusted = { 'x-trusted': 'yes' }
  const short = await receiveWithin(`${base}/work`, { headers: { ...trusted, 'x-slow': 'yes', 'x-request-timeout-ms': '100' } })
  t.equal(short.status, 504, 'shortened to 100 ms')
  t.ok(short.headersAt < 800, `504 after ${short.headersAt} ms, not at the 1 s answer`)
  const grpc = await receiveWithin(`${base}/work`, { headers: { ...trusted, 'x-slow': 'yes', 'grpc-timeout': '100m' } })
  t.equal(grpc.status, 504, 'grpc-timeout is read too')
  const long = await receiveWithin(`${base}/work`, { headers: { ...trusted, 'x-slow': 'yes', 'x-request-timeout-ms': '99999' } })
  t.equal(long.status, 200, 'a longer budget than the 1500 ms timeout: still answered at 1 s')
  t.ok(JSON.parse(long.body).expiresIn <= 500, 'but not lengthened beyond the timeout')
  for (const bad of ['abc', '-5', '1e3', '', '10.5', '0x10']) {
    const res = await receiveWithin(`${base}/work`, { headers: { ...trusted, 'x-request-timeout-ms': bad } })
    t.equal(res.status, 200, `malformed ${JSON.stringify(bad)} ignored`)
  }
  const untrusted = await receiveWithin(`${base}/work`, { headers: { 'x-request-timeout-ms': '100' } })
  t.equal(untrusted.status, 200, 'the trust function said no')
})
