import t from 'tap'
import http2 from 'node:http2'
import { once } from 'node:events'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { PROMPTLY, receiveWithin, within } from '../helpers/bounded.js'

// internalRewriteLocationHeader (default on), with nginx's `proxy_redirect default` meaning: a
// Location / Content-Location into the upstream's mapped prefix comes back under the proxy's.

/** Answers 302 with the Location and Content-Location given in the query (`?l=...&c=...`). */
function redirecting (req: IncomingMessage, res: ServerResponse): void {
  req.resume()
  const query = new URL(req.url ?? '/', 'http://x').searchParams
  const location = query.get('l')
  const contentLocation = query.get('c')
  if (location !== null) res.setHeader('location', location.replace('ORIGIN', `http://${req.headers.host ?? ''}`))
  if (contentLocation !== null) res.setHeader('content-location', contentLocation)
  res.statusCode = 302
  res.end()
}

const q = (l: string, c?: string): string => `?l=${encodeURIComponent(l)}${c === undefined ? '' : `&c=${encodeURIComponent(c)}`}`

t.test('a Location into the mapped prefix comes back under the proxy\'s prefix (params, base path, absolute same-origin)', async (t) => {
  const up = await upstream(t, redirecting)
  const { url } = await proxyApp(t, [
    { upstream: `${up.url}/base`, prefix: '/orders', rewritePrefix: '/v2/orders' },
    { upstream: up.url, prefix: '/tenants/:tenant', rewritePrefix: '/t/:tenant' },
    { upstream: up.url, prefix: '/plain' }
  ])
  const cases: Array<[string, string, string]> = [
    ['/orders/1', '/base/v2/orders/7', '/orders/7'],
    ['/orders/1', '/base/v2/orders', '/orders'],
    ['/orders/1', '/base/v2/orders?page=2', '/orders?page=2'],
    ['/orders/1', 'ORIGIN/base/v2/orders/7#frag', '/orders/7#frag'],
    ['/orders/1', '/base/v2/ordersX', '/base/v2/ordersX'], // not at a segment boundary
    ['/orders/1', '/elsewhere', '/elsewhere'], // outside the mapped prefix: left alone
    ['/orders/1', 'https://other.example/base/v2/orders/7', 'https://other.example/base/v2/orders/7'],
    ['/orders/1', '//other.example/base/v2/orders', '//other.example/base/v2/orders'],
    ['/orders/1', 'relative/path', 'relative/path'],
    ['/tenants/acme/x', '/t/acme/y', '/tenants/acme/y'],
    ['/tenants/acme/x', '/t/other/y', '/t/other/y'], // another tenant's prefix is not this request's
    ['/plain/a/b', '/something', '/plain/something'] // no rewritePrefix: every upstream path is under it
  ]
  for (const [path, location, expected] of cases) {
    const response = await receiveWithin(`${url}${path}${q(location)}`)
    t.equal(response.status, 302)
    t.equal(response.headers.location, expected, `${path} ${location}`)
  }
  t.equal(up.seen.length, cases.length)
  t.equal(up.seen[0].url, `/base/v2/orders/1${q('/base/v2/orders/7')}`, 'the upstream saw the mapped path')
})

t.test('Content-Location is rewritten too; internalRewriteLocationHeader: false leaves both; rewriteHeaders sees the rewritten value', async (t) => {
  const up = await upstream(t, redirecting)
  const seenByHook: unknown[] = []
  const { url } = await proxyApp(t, [
    { upstream: up.url, prefix: '/on', rewritePrefix: '/v1', rewriteHeaders: (headers) => { seenByHook.push(headers.location); return headers } },
    { upstream: up.url, prefix: '/off', rewritePrefix: '/v1', internalRewriteLocationHeader: false }
  ])
  const on = await receiveWithin(`${url}/on/x${q('/v1/a', '/v1/a.json')}`)
  t.equal(on.headers.location, '/on/a')
  t.equal(on.headers['content-location'], '/on/a.json')
  t.same(seenByHook, ['/on/a'])
  const off = await receiveWithin(`${url}/off/x${q('/v1/a', '/v1/a.json')}`)
  t.equal(off.headers.location, '/v1/a')
  t.equal(off.headers['content-location'], '/v1/a.json')
  t.same(up.seen.map(r => r.url?.split('?')[0]), ['/v1/x', '/v1/x'])
})

t.test('over HTTP/2 the rewritten Location arrives the same', async (t) => {
  const up = await upstream(t, redirecting)
  const { url } = await proxyApp(t, { upstream: up.url, prefix: '/api', rewritePrefix: '/v1' }, { fastify: { http2: true } as never })
  const session = http2.connect(url)
  t.teardown(() => session.close())
  const stream = session.request({ ':path': `/api/x${q('/v1/y')}` })
  const [headers] = await within(PROMPTLY, once(stream, 'response'), 'the response head') as [http2.IncomingHttpHeaders]
  stream.resume()
  await within(PROMPTLY, once(stream, 'end'), 'the end of the response')
  t.equal(headers[':status'], 302)
  t.equal(headers.location, '/api/y')
  t.equal(up.seen[0].url?.split('?')[0], '/v1/x')
})
