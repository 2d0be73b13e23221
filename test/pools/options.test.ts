// A pool's options refused at registration with a message that says how to fix them.
import Fastify from 'fastify'
import t from 'tap'
import proxy from '../../plugins/proxy/index.js'
import { registrationError } from '../helpers/registration.js'

t.test('pool options: each wrong one named, with what was expected', async (t) => {
  const a = 'http://127.0.0.1:1'
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ upstream: [] }, 'upstream: a pool needs at least one replica URL (or a `resolve` function)'],
    [{ upstream: [a, 'https://127.0.0.1:2'] }, 'upstream[1]: expected the scheme and path of upstream[0] (one pool, one base path), got "https://127.0.0.1:2"'],
    [{ upstream: [a, 'http://127.0.0.1:2/base'] }, 'upstream[1]: expected the scheme and path of upstream[0] (one pool, one base path), got "http://127.0.0.1:2/base"'],
    [{ upstream: [a, 'ftp://x'] }, 'upstream[1]: expected an absolute http(s) URL without query, fragment or credentials, got "ftp://x"'],
    [{ upstream: [{ url: a, weight: 0 }] }, 'upstream[0].weight: expected an integer >= 1, got 0'],
    [{ upstream: a, balance: 'round-robin' }, 'balance: applies to a pool: give `upstream` as a list of replicas, or `resolve`'],
    [{ upstream: [a], balance: 'fastest' }, 'balance: expected \'least-request\', \'round-robin\', \'random\' or { hash: (request) => key }, got "fastest"'],
    [{ upstream: [a], outlierDetection: { consecutiveFailure: 3 } }, 'outlierDetection.consecutiveFailure: unknown option (did you mean consecutiveFailures?)'],
    [{ upstream: [a], outlierDetection: { maxEjectionPercent: 150 } }, 'outlierDetection.maxEjectionPercent: expected a percentage (0 to 100), got 150'],
    [{ upstream: [a], healthCheck: { interval: 5 } }, 'healthCheck.path: expected a path starting with /, got undefined'],
    [{ upstream: [a], healthCheck: { path: '/h', timout: 5 } }, 'healthCheck.timout: unknown option (did you mean timeout?)'],
    [{ upstream: [a], resolve: { dns: true, replicas: async () => [] } }, 'resolve: give one of `dns: true` or `replicas: async () => urls`'],
    [{ upstream: [a], resolve: {} }, 'resolve: give one of `dns: true` or `replicas: async () => urls`'],
    [{ upstream: () => a, resolve: { dns: true } }, 'upstream: a function cannot be a pool: give a list of replicas, or `resolve`'],
    [{ upstream: [a], retryBodyLimit: -1 }, 'retryBodyLimit: expected an integer >= 0, got -1']
  ]
  for (const [options, message] of cases) {
    const err = await registrationError(proxy, options)
    t.same({ code: err.code, message: err.message }, { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION', message: `Invalid proxy option ${message}` })
  }
})

t.test('a pool whose resolve gives nothing answers 503 FST_STREAMLINE_UPSTREAM_NO_REPLICA', async (t) => {
  const app = Fastify()
  await app.register(proxy, { resolve: async () => [] })
  await app.ready()
  t.teardown(async () => { await app.close() })
  const res = await app.inject('/x')
  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'FST_STREAMLINE_UPSTREAM_NO_REPLICA')
})
