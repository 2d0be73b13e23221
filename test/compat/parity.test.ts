// The last @fastify/http-proxy forms this proxy used to refuse: `beforeHandler` (its older name
// for preHandler), a WebSocket-only registration (`wsUpstream` + `websocket: true`, no
// `upstream`), and a prefix with non-ASCII letters, served as its percent-encoded request target.
import { once } from 'node:events'
import t from 'tap'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { proxyApp, receive, upstream } from '../helpers/proxy-servers.js'
import { openClient, proxyApp as wsProxyApp, wsUpstream } from '../helpers/ws-servers.js'
import { within } from '../helpers/bounded.js'

t.test('beforeHandler runs as a preHandler, before any upstream contact', async (t) => {
  const up = await upstream(t, (_req, res) => res.end('upstream'))
  const beforeHandler = async (request: FastifyRequest, reply: FastifyReply): Promise<unknown> =>
    request.headers.authorization === undefined ? await reply.code(401).send({ error: 'login first' }) : undefined
  const { url } = await proxyApp(t, { upstream: up.url, prefix: '/api', beforeHandler })
  const refused = await within(5000, receive(`${url}/api/x`), 'the refused answer')
  t.equal(refused.status, 401)
  t.equal(up.seen.length, 0, 'the upstream saw nothing')
  const allowed = await within(5000, receive(`${url}/api/x`, { headers: { authorization: 'Bearer x' } }), 'the allowed answer')
  t.equal(allowed.status, 200)
  t.equal(allowed.body, 'upstream')
  t.same(up.seen.map(req => req.url), ['/x'])
})

t.test('a WebSocket-only registration tunnels, and its plain requests go to the same host over http', async (t) => {
  const up = await wsUpstream(t)
  const { url, port } = await wsProxyApp(t, { wsUpstream: `ws://127.0.0.1:${up.port}` })
  const ws = await within(5000, openClient(`${url}/echo`), 'the tunnel opened')
  ws.send('hi')
  const [message] = await within(5000, once(ws, 'message'), 'the echo') as [Buffer]
  t.equal(message.toString(), 'hi')
  t.equal(up.handshakes[0]?.url, '/echo', 'the upstream got the handshake')
  ws.close()
  const plain = await within(5000, receive(`http://127.0.0.1:${port}/ws/plain`), 'the plain answer')
  t.equal(plain.status, 426, 'the upstream\'s own answer to a plain request')
})

t.test('a non-ASCII prefix is served, in either case of its escapes, and a rewritePrefix is sent encoded', async (t) => {
  const up = await upstream(t, (req, res) => res.end(req.url))
  const { url } = await proxyApp(t, { upstream: up.url, prefix: '/café', rewritePrefix: '/été' })
  for (const path of ['/caf%C3%A9/menu', '/caf%c3%a9/menu']) {
    const got = await within(5000, receive(`${url}${path}`), `the answer to ${path}`)
    t.equal(got.status, 200, path)
    t.equal(got.body, '/%C3%A9t%C3%A9/menu', `${path}: the upstream got the rewritten path`)
  }
  t.equal(up.seen.length, 2)
})
