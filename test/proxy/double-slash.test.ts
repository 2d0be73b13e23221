// Requests meant for a proxied prefix that reach none of its routes get the proxy's JSON 404 with
// its code (FST_STREAMLINE_PROXY_NOT_FOUND), never Fastify's default 404 without one; the app's
// own routes and its own 404 handler keep everything else.
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import proxy from '../../plugins/proxy/index.js'
import { port, proxyApp, rawRequest, upstream } from '../helpers/proxy-servers.js'
import { ANSWERED, within } from '../helpers/bounded.js'

const NOT_FOUND = { statusCode: 404, code: 'FST_STREAMLINE_PROXY_NOT_FOUND', error: 'Not Found', message: 'No upstream for this path' }

async function send (url: string, method: string, path: string): Promise<{ status: number, body: string }> {
  const received = await within(ANSWERED, rawRequest(url, `${method} ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`), 'the proxy\'s answer to the raw request')
  return { status: Number(received.split(' ')[1]), body: received.slice(received.indexOf('\r\n\r\n') + 4) }
}

async function assertOurs (t: Test, url: string, method: string, path: string, status: number, code: string): Promise<void> {
  const res = await send(url, method, path)
  t.equal(res.status, status, `${method} ${path}: ${status}`)
  t.equal(JSON.parse(res.body).code, code, `${method} ${path}: ${code}`)
}

t.test('a doubled leading slash or an unproxied method under the prefix: our 404; the app keeps its own', async (t) => {
  const up = await upstream(t, (req, res) => { res.end(`upstream ${req.method} ${req.url}`) })
  const { url } = await proxyApp(t, [
    { upstream: up.url, prefix: '/api', httpMethods: ['GET', 'HEAD', 'POST'] },
    // A second registration on the same prefix (other methods) shares the first one's handler.
    { upstream: up.url, prefix: '/api', httpMethods: ['DELETE'] },
    { upstream: up.url, prefix: '/files' }
  ], {
    before: (app) => {
      app.get('/mine', async () => 'mine')
      app.setNotFoundHandler((_request, reply) => { reply.code(404).type('text/plain').send('the app\'s own 404') })
    }
  })

  for (const path of ['//api/x', '//api', '//api/', '//api/a/b?q=1', '//files/report.pdf']) {
    const res = await send(url, 'GET', path)
    t.equal(res.status, 404, `GET ${path}: 404`)
    t.same(JSON.parse(res.body), NOT_FOUND, `GET ${path}: our JSON error with its code`)
  }
  for (const method of ['PUT', 'TRACE', 'PROPFIND']) {
    const res = await send(url, method, '/api/x')
    t.same([res.status, JSON.parse(res.body)], [404, NOT_FOUND], `${method}: a method the proxy does not take, under the prefix`)
  }
  await assertOurs(t, url, 'GET', '/api//x', 400, 'FST_STREAMLINE_PROXY_BAD_PATH')
  await assertOurs(t, url, 'GET', '/api/%2e%2e/', 400, 'FST_STREAMLINE_PROXY_BAD_PATH')

  for (const path of ['/other', '//mine', '/apix', '/API/x']) {
    t.same(await send(url, 'GET', path), { status: 404, body: 'the app\'s own 404' }, `GET ${path}: the app's own 404 handler`)
  }
  t.same(await send(url, 'GET', '/mine'), { status: 200, body: 'mine' }, 'the app\'s own route')
  t.same(up.seen.length, 0, 'the upstream saw none of those')

  t.equal((await send(url, 'GET', '/api/x')).body, 'upstream GET /x', 'the proxy still proxies')
  t.equal((await send(url, 'DELETE', '/api/y')).body, 'upstream DELETE /y')
  t.same(up.seen.map(r => `${r.method} ${r.url}`), ['GET /x', 'DELETE /y'])
})

t.test('without an app 404 handler: Fastify\'s default answers outside the prefix, ours under it', async (t) => {
  const up = await upstream(t, (_req, res) => { res.end('upstream') })
  const { url } = await proxyApp(t, { upstream: up.url, prefix: '/api' })
  const doubled = await send(url, 'GET', '//api/x')
  t.same([doubled.status, JSON.parse(doubled.body)], [404, NOT_FOUND])
  const other = await send(url, 'GET', '/other')
  t.equal(other.status, 404)
  t.same(JSON.parse(other.body), { message: 'Route GET:/other not found', error: 'Not Found', statusCode: 404 }, 'outside the prefix: unchanged')
  t.equal(up.seen.length, 0)
  t.equal((await send(url, 'GET', '/api/x')).body, 'upstream', 'the process is alive and proxying')
})

t.test('a root prefix takes every path: no handler added, the app\'s own 404 stays settable', async (t) => {
  const up = await upstream(t, (req, res) => { res.end(`upstream ${req.url}`) })
  const { url, app } = await proxyApp(t, { upstream: up.url }, {
    before: (app) => { app.setNotFoundHandler((_request, reply) => { reply.code(404).send('own') }) }
  })
  t.ok(app.hasRoute({ method: 'GET', url: '/*' }))
  await assertOurs(t, url, 'GET', '//x', 400, 'FST_STREAMLINE_PROXY_BAD_PATH')
  t.equal((await send(url, 'GET', '/x')).body, 'upstream /x')
  t.same(up.seen.map(r => r.url), ['/x'])
})

t.test('the app can still set its own 404 handler after registering the proxy', async (t) => {
  const up = await upstream(t, (_req, res) => { res.end('upstream') })
  const app = Fastify()
  await app.register(proxy, { upstream: up.url, prefix: '/api' })
  app.setNotFoundHandler((_request, reply) => { reply.code(404).type('text/plain').send('set later') })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const url = `http://127.0.0.1:${port(app.server)}`
  t.same(await send(url, 'GET', '/other'), { status: 404, body: 'set later' })
  const doubled = await send(url, 'GET', '//api/x')
  t.same([doubled.status, JSON.parse(doubled.body)], [404, NOT_FOUND])
  t.equal((await send(url, 'GET', '/api/x')).body, 'upstream')
  t.equal(up.seen.length, 1)
})
