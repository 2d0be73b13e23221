// The proxy's `serverTiming` option: this hop's metrics after the upstream's own.
import t from 'tap'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { receiveWithin } from '../helpers/bounded.js'

const METRIC = /^db;dur=12, upstream;dur=(\d+\.\d), budget;desc="deadline remaining";dur=(\d+)$/

t.test('serverTiming appends upstream latency and the deadline budget to the upstream\'s header', async (t) => {
  const up = await upstream(t, (req, res) => {
    const headers = req.url === '/plain' ? {} : { 'server-timing': 'db;dur=12' }
    setTimeout(() => res.writeHead(200, headers).end('ok'), 100)
  })
  const timed = await proxyApp(t, { upstream: up.url, serverTiming: true }, { deadline: { timeout: 5000 } })
  const received = await receiveWithin(`${timed.url}/report`)
  t.equal(received.body, 'ok')
  const match = METRIC.exec(String(received.headers['server-timing']))
  t.ok(match, `Server-Timing: ${String(received.headers['server-timing'])}`)
  if (match !== null) {
    t.ok(Number(match[1]) >= 90 && Number(match[1]) < 3000, `upstream;dur=${match[1]} (the upstream waited 100 ms)`)
    t.ok(Number(match[2]) > 1000 && Number(match[2]) <= 5000, `budget;dur=${match[2]} of the 5000 ms timeout`)
  }
  const plain = await receiveWithin(`${timed.url}/plain`)
  t.match(plain.headers['server-timing'], /^upstream;dur=\d+\.\d, budget;desc="deadline remaining";dur=\d+$/, 'alone when the upstream sent none')

  const off = await proxyApp(t, { upstream: up.url }, { deadline: { timeout: 5000 } })
  t.equal((await receiveWithin(`${off.url}/report`)).headers['server-timing'], 'db;dur=12', 'off by default: the upstream\'s header as sent')

  const noDeadline = await proxyApp(t, { upstream: up.url, serverTiming: true })
  t.match((await receiveWithin(`${noDeadline.url}/report`)).headers['server-timing'], /^db;dur=12, upstream;dur=\d+\.\d$/, 'no budget without a deadline')
  t.equal(up.seen.length, 4)
})

t.test('serverTiming must be a boolean', async (t) => {
  const up = await upstream(t, (_req, res) => res.end())
  await t.rejects(proxyApp(t, { upstream: up.url, serverTiming: 'yes' as unknown as boolean }), { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION' })
})
