import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { Agent } from 'undici'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { receiveWithin } from '../helpers/bounded.js'
import { registrationError } from '../helpers/registration.js'

// @fastify/http-proxy's option names as aliases of ours: one meaning each, a conflicting pair
// refused at registration, the rest of `undici` passed to the Agent.

t.test('conflicting or unsupported pairs are refused, naming both', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ upstream: 'http://a', base: 'http://b' }, /base: conflicts with `upstream`/],
    [{ upstream: 'http://a', connections: 4, undici: { connections: 8 } }, /undici.connections: conflicts with `connections` \(4\)/],
    [{ upstream: 'http://a', connectTimeout: 100, undici: { connect: { timeout: 200 } } }, /undici.connect.timeout: conflicts with `connectTimeout`/],
    [{ upstream: 'http://a', tls: { servername: 'x' }, undici: { connect: { servername: 'y' } } }, /undici.connect.servername: conflicts with tls.servername/],
    [{ upstream: 'http://a', undici: { connect: () => null } }, /undici.connect: expected an object/],
    [{ upstream: 'http://a', undici: { maxRedirections: 2 } }, /undici.maxRedirections: not supported/],
    [{ upstream: 'http://a', undici: 'yes' }, /undici: expected true, undici Agent options or an undici Dispatcher/],
    [{ upstream: 'http://a', http2: 'yes' }, /http2: expected a boolean/],
    [{ upstream: 'http://a', http2: true, undici: new Agent() }, /http2: the Dispatcher given as `undici` is used as it is/],
    [{ upstream: 'http://a', globalAgent: true }, /globalAgent: the proxy always uses its own undici agent/],
    [{ upstream: 'http://a', rewriteHeaders: (h: unknown) => h, replyOptions: { rewriteHeaders: (h: unknown) => h } }, /replyOptions.rewriteHeaders: conflicts with the top-level/],
    [{ upstream: 'http://a', replyOptions: { timeout: 100 } }, /replyOptions.timeout: use the `headersTimeout`/],
    [{ upstream: 'http://a', replyOptions: { getUpstream: 'x' } }, /replyOptions.getUpstream: expected a function/],
    [{ upstream: () => 'http://a', replyOptions: { getUpstream: () => 'http://b' } }, /replyOptions.getUpstream: conflicts with an `upstream` function/],
    [{ upstream: 'http://a', routes: [] }, /routes: expected a non-empty array/],
    [{ upstream: 'http://a', handler: 'x' }, /handler: expected a function/],
    [{ upstream: 'http://a', proxyPayloads: 'no' }, /proxyPayloads: expected a boolean/],
    [{ upstream: 'http://a', getWebSocketUpstream: () => 'x' }, /getWebSocketUpstream: unknown option/]
  ]
  for (const [options, message] of cases) {
    t.match(await registrationError(proxy, options), { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION', message })
  }
})

t.test('equal values on both sides, base alone, http2: false and the harmless reply-from options are accepted', async (t) => {
  const up = await upstream(t, (req, res) => { req.resume(); res.end(`seen ${req.url ?? ''}`) })
  const { url } = await proxyApp(t, [
    { base: up.url, prefix: '/base', http2: false, disableCache: true, cacheURLs: 10, disableRequestLogging: true } as ProxyOptions,
    { upstream: up.url, prefix: '/same', connections: 4, undici: { connections: 4, pipelining: 1, keepAliveMaxTimeout: 5000, connect: { timeout: 1000, rejectUnauthorized: true } }, connectTimeout: 1000 }
  ])
  t.equal((await receiveWithin(`${url}/base/x`)).body, 'seen /x')
  t.equal((await receiveWithin(`${url}/same/y`)).body, 'seen /y')
  t.same(up.seen.map(r => r.url), ['/x', '/y'])
})

/** Answers 503 to the first `failures` requests, then 200. */
function flaky (failures: number): (req: IncomingMessage, res: ServerResponse) => void {
  let count = 0
  return (req, res) => {
    req.resume()
    res.statusCode = ++count <= failures ? 503 : 200
    res.setHeader('retry-after', '0')
    res.end(`attempt ${count}`)
  }
}

t.test('replyOptions.retriesCount / maxRetriesOn503 are `retries` (the larger one); retryMethods chooses the methods', async (t) => {
  const up = await upstream(t, flaky(2))
  const { url } = await proxyApp(t, { upstream: up.url, replyOptions: { retriesCount: 1, maxRetriesOn503: 2 } })
  const response = await receiveWithin(`${url}/a`)
  t.equal(response.status, 200)
  t.equal(response.body, 'attempt 3')
  t.equal(up.seen.length, 3, 'two retries')

  const deletes = await upstream(t, flaky(1))
  const withMethods = await proxyApp(t, { upstream: deletes.url, maxRetriesOn503: 1, retryMethods: ['DELETE'] })
  const deleted = await receiveWithin(`${withMethods.url}/b`, { method: 'DELETE' })
  t.equal(deleted.status, 200, 'DELETE without a body retried')
  const get = await receiveWithin(`${withMethods.url}/c`)
  t.equal(get.status, 200, 'its second attempt overall')
  t.same(deletes.seen.map(r => `${r.method ?? ''} ${r.url ?? ''}`), ['DELETE /b', 'DELETE /b', 'GET /c'], 'GET is not in retryMethods: not retried')
})

t.test('a user rewriteRequestHeaders in replyOptions is the top-level one', async (t) => {
  const up = await upstream(t, (req, res) => { req.resume(); res.end(String(req.headers['x-added'])) })
  const { url } = await proxyApp(t, { upstream: up.url, replyOptions: { rewriteRequestHeaders: (_request, headers) => ({ ...headers, 'x-added': 'yes' }) } })
  const response = await receiveWithin(`${url}/`)
  t.equal(response.body, 'yes')
  t.ok(up.seen[0].headers['x-forwarded-for'], 'after the proxy\'s own X-Forwarded-*')
})
