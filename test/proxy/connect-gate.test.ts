// The bound on connects in flight per origin (upstream/connect-gate.ts) only makes requests wait
// for a connect to finish: it never caps established connections (a long-lived response holds
// one), and every request that waited is sent, or answered, once connects finish or fail.
import type { FastifyServerOptions } from 'fastify'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { until, within } from '../helpers/bounded.js'
import { h2Request, h2ServerOptions, h2Session, type H2Received } from '../helpers/h2.js'
import { CONNECTS_IN_FLIGHT } from '../../plugins/proxy/upstream/connect-gate.js'

const COUNT = 2 * CONNECTS_IN_FLIGHT + 8

/**
 * `COUNT` requests in one write, on one HTTP/2 connection: the proxy reads them at once, so they
 * all need a new upstream connection at once and most must wait at the gate.
 */
async function atOnce (t: Test, upstreamUrl: string, path: string): Promise<Array<Promise<H2Received>>> {
  const { app } = await proxyApp(t, { upstream: upstreamUrl }, { fastify: h2ServerOptions(t, 'h2c') as unknown as FastifyServerOptions })
  const session = await h2Session(t, 'h2c', (app.server.address() as net.AddressInfo).port)
  return Array.from({ length: COUNT }, (_, i) => h2Request(session, `${path}/${i}`).done)
}

t.test(`${COUNT} requests at once to a cold upstream, each held until all have arrived: all reach it and are answered`, async (t) => {
  const held: http.ServerResponse[] = []
  let connections = 0
  const up = await upstream(t, (_req, res) => {
    held.push(res)
    // All at once upstream, so on as many established connections: none waits behind another.
    if (held.length === COUNT) for (const res of held) res.end('ok')
  })
  up.server.on('connection', () => { connections++ })
  const answers = await atOnce(t, up.url, '/held')
  await within(15_000, until(15_000, () => held.length === COUNT, `all ${COUNT} requests upstream at once`), () => `the upstream holds ${held.length} of ${COUNT}`)
  const received = await within(15_000, Promise.all(answers), 'every answer')
  t.same(new Set(received.map(r => `${r.status} ${r.body}`)), new Set(['200 ok']), 'every request answered by the upstream')
  t.equal(connections, COUNT, `one upstream connection each (${connections})`)
})

t.test(`${COUNT} requests at once to a refused port: each answered 502, none left waiting`, async (t) => {
  // A port that was just listening: connects to it are refused.
  const closed = net.createServer().listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const { port } = closed.address() as net.AddressInfo
  await new Promise(resolve => closed.close(resolve))
  const answers = await atOnce(t, `http://127.0.0.1:${port}`, '/refused')
  const received = await within(15_000, Promise.all(answers), 'every answer')
  t.same(new Set(received.map(r => `${r.status} ${(JSON.parse(r.body) as { code: string }).code}`)), new Set(['502 FST_STREAMLINE_UPSTREAM_UNAVAILABLE']))
})
