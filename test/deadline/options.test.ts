// Options as the README lists them, and nothing else: a typo or an undocumented value fails loudly
// at registration, naming the option, instead of silently leaving the defaults in force.
import t from 'tap'
import Fastify from 'fastify'
import deadline, { type DeadlineOptions, type RouteDeadlineOptions } from '../../plugins/deadline/index.js'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { receiveWithin } from '../helpers/bounded.js'

t.test('an unknown plugin option is refused by the deadline plugin and by the proxy, naming it', async (t) => {
  const withDeadline = Fastify()
  await t.rejects(async () => { await withDeadline.register(deadline, { tmeout: 5000 } as DeadlineOptions) },
    { code: 'FST_STREAMLINE_INVALID_OPTION', message: 'Invalid deadline option tmeout: unknown option' })
  await withDeadline.close()

  const withProxy = Fastify()
  await t.rejects(async () => { await withProxy.register(proxy, { upstream: 'http://127.0.0.1:9', tmeout: 5000 } as ProxyOptions) },
    { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION', message: /tmeout: unknown option/ })
  await withProxy.close()
})

t.test('config.deadline takes false or an object of known options; true, numbers and typos are refused', async (t) => {
  const app = Fastify()
  await app.register(deadline, {})
  const cases: Array<[unknown, RegExp]> = [
    [true, /config\.deadline: expected false or an object, got true/],
    [5000, /config\.deadline: expected false or an object, got 5000/],
    [null, /config\.deadline: expected false or an object/],
    [[], /config\.deadline: expected false or an object/],
    [{ timeot: 5 }, /config\.deadline\.timeot: unknown option/],
    [{ streaming: 'yes' }, /config\.deadline\.streaming: expected a boolean/]
  ]
  for (const [value, message] of cases) {
    t.throws(() => app.get(`/x${cases.findIndex(c => c[0] === value)}`, { config: { deadline: value as RouteDeadlineOptions } }, async () => 'x'),
      { code: 'FST_STREAMLINE_INVALID_OPTION', message }, `config.deadline = ${JSON.stringify(value)}`)
  }
  await app.close()

  // Through the proxy's `config` option too: the route is added when the proxy registers.
  const proxied = Fastify()
  await proxied.register(deadline, {})
  await t.rejects(async () => { await proxied.register(proxy, { upstream: 'http://127.0.0.1:9', config: { deadline: true as unknown as false } }) },
    { code: 'FST_STREAMLINE_INVALID_OPTION', message: /config\.deadline: expected false or an object, got true/ })
  await proxied.close()
})

t.test('Fastify\'s own register options are accepted, and the documented values work on a real server', async (t) => {
  const up = await upstream(t, () => {}) // never answers: the deadline must
  const { url } = await proxyApp(t, [
    // (the helper's parameter type is the proxy's own options, without Fastify's)
    { upstream: up.url, prefix: '/short', logLevel: 'warn', config: { deadline: { timeout: 200 } } } as ProxyOptions,
    { upstream: up.url, prefix: '/off', logLevel: 'warn', config: { deadline: false }, headersTimeout: 300 } as ProxyOptions
  ], { deadline: { timeout: 30_000, logLevel: 'warn', logSerializers: {} } as DeadlineOptions })

  const short = await receiveWithin(`${url}/short/a`)
  t.equal(short.status, 504)
  t.equal(JSON.parse(short.body).code, 'FST_STREAMLINE_DEADLINE_EXCEEDED', 'the route\'s own timeout (200 ms), not the plugin\'s 30 s')
  t.ok(short.headersAt < 5000, `504 after ${short.headersAt} ms`)
  const off = await receiveWithin(`${url}/off/b`)
  t.equal(off.status, 504)
  t.equal(JSON.parse(off.body).code, 'FST_STREAMLINE_UPSTREAM_TIMEOUT', 'opted out: only the proxy\'s headersTimeout applies')
  t.same(up.seen.map(r => [r.url, r.headers['x-request-timeout-ms'] !== undefined]), [['/a', true], ['/b', false]],
    'the upstream saw both requests, a budget only on the route with a deadline')
})
