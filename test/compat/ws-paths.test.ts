import t, { type Test } from 'tap'
import { once } from 'node:events'
import net from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyWebSocket from '@fastify/websocket'
import { WebSocket } from 'ws'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'
import { PROMPTLY, within } from '../helpers/bounded.js'
import { rawUpgradeStatus } from '../helpers/ws-servers.js'

// Path mapping of WebSocket upgrades and plain requests, from @fastify/http-proxy 11.6's
// test/ws-prefix-rewrite.js, with the same options against our proxy: the upstream echoes the
// path it got, over a WebSocket and over HTTP, and both must agree with http-proxy's answer.

/** A backend that answers every path with the path it saw, as a message and as a body. */
async function backend (t: Test): Promise<{ url: string, app: FastifyInstance, seen: string[] }> {
  const app = Fastify()
  const seen: string[] = []
  await app.register(fastifyWebSocket)
  app.route({
    method: 'GET',
    url: '/*',
    handler: async (request) => { seen.push(`http ${request.url}`); return request.url },
    wsHandler: (socket, request) => {
      seen.push(`ws ${request.url}`)
      socket.send(request.url)
      socket.once('message', () => socket.close())
    }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { url: `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`, app, seen }
}

async function frontend (t: Test, options: ProxyOptions, wrapperPrefix?: string): Promise<string> {
  const app = Fastify()
  if (wrapperPrefix === undefined) await app.register(proxy, options)
  else await app.register(async (scope) => { await scope.register(proxy, options) }, { prefix: wrapperPrefix })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return `http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`
}

/** What the client got over a WebSocket and over HTTP: the echoed path, or 'error'. */
async function both (url: string): Promise<[string, string]> {
  const ws = new WebSocket(url.replace('http:', 'ws:'))
  // Listening before 'open': a message that came with the 101 is emitted right after it.
  const message = once(ws, 'message') as Promise<[Buffer]>
  message.catch(() => {})
  let viaWs = 'error'
  try {
    await once(ws, 'open')
    const [data] = await message
    viaWs = data.toString()
    ws.send('bye')
    await once(ws, 'close')
  } catch {
    ws.terminate()
  }
  const response = await fetch(url)
  const viaHttp = response.ok ? await response.text() : 'error'
  return [viaWs, viaHttp]
}

const cases: Array<[string, (upstream: string) => ProxyOptions, string | undefined, Array<[string, string]>]> = [
  ['no prefix to `/`', (u) => ({ upstream: `${u}/`, websocket: true }), undefined, [['/', '/'], ['/pub', '/pub'], ['/pub/', '/pub/']]],
  ['`/pub/` to `/`', (u) => ({ upstream: `${u}/`, websocket: true, prefix: '/pub/' }), undefined, [['/', 'error'], ['/pub/', '/'], ['/pub/test', '/test']]],
  ['`/pub/` to `/public/`', (u) => ({ upstream: `${u}/public/`, websocket: true, prefix: '/pub/' }), undefined, [['/', 'error'], ['/pub/', '/public/'], ['/pub/test', '/public/test']]],
  ['wrapped `/pub/` to `/public/`', (u) => ({ upstream: `${u}/public/`, websocket: true }), '/pub/', [['/', 'error'], ['/pub/', '/public/'], ['/pub/test', '/public/test']]],
  ['parameterized Unicode prefix', (u) => ({ upstream: `${u}/`, websocket: true, prefix: '/api/:tenant', rewritePrefix: '/internal/:tenant' }), undefined,
    [['/api/caf%C3%A9/socket', '/internal/caf%C3%A9/socket']]]
]

for (const [name, options, wrapper, paths] of cases) {
  t.test(name, async (t) => {
    const b = await backend(t)
    const url = await frontend(t, options(b.url), wrapper)
    for (const [path, expected] of paths) {
      t.same(await within(PROMPTLY, both(`${url}${path}`), `${path}: an answer over WebSocket and over HTTP`), [expected, expected], path)
    }
    const reached = paths.filter(([, expected]) => expected !== 'error').flatMap(([, expected]) => [`ws ${expected}`, `http ${expected}`])
    t.same(b.seen, reached, 'the upstream saw only the mapped paths')
  })
}

t.test('percent-encoded backslashes: path data there, refused here (400 for both; README: Path safety)', async (t) => {
  const b = await backend(t)
  const url = await frontend(t, { upstream: `${b.url}/internal`, websocket: true, prefix: '/pub' })
  t.same(await within(PROMPTLY, both(`${url}/pub/foo%5C..bar`), '/pub/foo%5C..bar: an answer over WebSocket and over HTTP'), ['error', 'error'])
  t.equal(await rawUpgradeStatus(Number(new URL(url).port), '/pub/foo%5C..bar'), 'HTTP/1.1 400 Bad Request')
  t.same(b.seen, [])
})

t.test('WebSocket paths must not escape rewritePrefix (18 vectors)', async (t) => {
  const b = await backend(t)
  const plain = await frontend(t, { upstream: `ws://127.0.0.1:${new URL(b.url).port}`, websocket: true, prefix: '/pub', rewritePrefix: '/internal' })
  const params = await frontend(t, { upstream: `ws://127.0.0.1:${new URL(b.url).port}`, websocket: true, prefix: '/api/:tenant', rewritePrefix: '/internal/:tenant' })
  const vectors: Array<[string, string]> = [
    ['/pub/../secret', plain], ['/pub/%2E%2E/secret', plain], ['/pub/%2e%2e/secret', plain], ['/pub/.%2E/secret', plain],
    ['/pub/%2E./secret', plain], ['/pub/../internality/secret', plain], ['/pub/%2E%2E/internality/secret', plain],
    ['/pub/dir\\..\\..\\internality/secret', plain], ['/pub/%/secret', plain],
    ['/api/../secret', params], ['/api/%2E%2E/secret', params], ['/api/..%2F..%2Fsecret', params], ['/api/..\\..\\secret', params],
    ['/api/..%5C..%5Csecret', params],
    ['/pub/%5c..%5csecret', plain], ['/pub/%5C..%5Csecret', plain], ['/pub/%5c..%5c..%5csecret', plain], ['/pub/%5C..%5C..%5Csecret', plain]
  ]
  for (const [vector, url] of vectors) {
    t.equal(await rawUpgradeStatus(Number(new URL(url).port), vector), 'HTTP/1.1 400 Bad Request', vector)
  }
  t.same(b.seen, [], 'no vector reached the upstream')
})
