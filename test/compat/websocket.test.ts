import t, { type Test } from 'tap'
import { once } from 'node:events'
import Fastify, { type FastifyRequest } from 'fastify'
import { WebSocket, WebSocketServer } from 'ws'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'
import { portOf, rawUpgradeStatus, wsUpstream } from '../helpers/ws-servers.js'
import { PROMPTLY, within } from '../helpers/bounded.js'

// WebSocket cases of @fastify/http-proxy 11.6's suite (test/websocket.js, websocket-querystring.js)
// with the same options against our proxy. Its ws endpoints in the middle are a byte pipe here:
// the client's handshake is forwarded (so its subprotocol and cookie arrive as sent) and frames
// are never parsed. Per-message options are refused at registration with the reason.

const cookie = 'foo=bar'
const subprotocol = 'foo-subprotocol'

async function proxyServer (t: Test, options: ProxyOptions | ProxyOptions[]): Promise<{ port: number, close: () => Promise<void> }> {
  const app = Fastify()
  for (const o of Array.isArray(options) ? options : [options]) await app.register(proxy, o)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { port: portOf(app.server), close: async () => { await app.close() } }
}

/** Opens a client, echoes a text and a binary message through the tunnel, and closes it. */
async function echoBoth (t: Test, url: string, protocols: string[] = [], headers: Record<string, string> = {}): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, { headers })
  await within(PROMPTLY, once(ws, 'open'), 'the WebSocket opened')
  ws.send('hello', { binary: false })
  const [text, textBinary] = await within(PROMPTLY, once(ws, 'message'), 'the next message') as [Buffer, boolean]
  t.equal(text.toString(), 'hello')
  t.equal(textBinary, false)
  ws.send(Buffer.from('fastify'), { binary: true })
  const [binary, isBinary] = await within(PROMPTLY, once(ws, 'message'), 'the next message') as [Buffer, boolean]
  t.equal(binary.toString(), 'fastify')
  t.equal(isBinary, true)
  return ws
}

async function closeClient (ws: WebSocket): Promise<void> {
  ws.close()
  await within(PROMPTLY, once(ws, 'close'), 'the close')
}

t.test('basic websocket proxy (upstream: ws://): subprotocol and cookie reach the upstream; app.close() closes the client', async (t) => {
  const origin = await wsUpstream(t)
  const server = await proxyServer(t, { upstream: `ws://127.0.0.1:${origin.port}`, websocket: true })
  const ws = await echoBoth(t, `ws://127.0.0.1:${server.port}`, [subprotocol], { cookie })
  t.equal(ws.protocol, subprotocol)
  t.equal(origin.handshakes[0].headers.cookie, cookie)
  t.equal(origin.handshakes[0].headers['sec-websocket-protocol'], subprotocol)
  await within(PROMPTLY, Promise.all([once(ws, 'close'), server.close()]), 'app.close() returned and closed the client')
})

t.test('getUpstream (upstream: \'\'): the upgrade goes where getUpstream says', async (t) => {
  const origin = await wsUpstream(t)
  const seen: unknown[] = []
  const server = await proxyServer(t, {
    upstream: '',
    websocket: true,
    replyOptions: { getUpstream: (request: FastifyRequest) => { seen.push(typeof request.raw); return origin.url } }
  } as unknown as ProxyOptions)
  const ws = await echoBoth(t, `ws://127.0.0.1:${server.port}`, [subprotocol], { cookie })
  t.same(seen, ['object'], 'called once, with the Fastify request')
  t.equal(origin.handshakes[0].headers.cookie, cookie)
  await closeClient(ws)
})

t.test('wsClientOptions: rewriteRequestHeaders(headers, request) and headers add to the handshake', async (t) => {
  const origin = await wsUpstream(t)
  const server = await proxyServer(t, [
    { upstream: `ws://127.0.0.1:${origin.port}`, prefix: '/rewrite', websocket: true, wsClientOptions: { rewriteRequestHeaders: (headers: object) => ({ ...headers, myauth: 'myauth' }) } },
    { upstream: `ws://127.0.0.1:${origin.port}`, prefix: '/headers', websocket: true, wsClientOptions: { headers: { myauth: 'from-options' } } }
  ])
  await closeClient(await echoBoth(t, `ws://127.0.0.1:${server.port}/rewrite`, [subprotocol], { cookie }))
  await closeClient(await echoBoth(t, `ws://127.0.0.1:${server.port}/headers`, [subprotocol]))
  t.equal(origin.handshakes[0].headers.myauth, 'myauth')
  t.equal(origin.handshakes[0].headers.cookie, cookie, 'the client\'s own headers still pass (all of them, not only the cookie)')
  t.equal(origin.handshakes[1].headers.myauth, 'from-options')
})

t.test('wsClientOptions.queryString: object and function', async (t) => {
  const origin = await wsUpstream(t)
  const server = await proxyServer(t, [
    { upstream: `ws://127.0.0.1:${origin.port}`, prefix: '/object', websocket: true, wsClientOptions: { queryString: { q: 'test' } } },
    { upstream: `ws://127.0.0.1:${origin.port}`, prefix: '/function', websocket: true, wsClientOptions: { queryString: (search: string) => `q=test&was=${encodeURIComponent(search)}` } }
  ])
  await closeClient(await echoBoth(t, `ws://127.0.0.1:${server.port}/object?dropped=1`, [subprotocol]))
  await closeClient(await echoBoth(t, `ws://127.0.0.1:${server.port}/function?x=1`, [subprotocol]))
  t.equal(origin.handshakes[0].url, '/?q=test')
  t.equal(origin.handshakes[1].url, '/?q=test&was=%3Fx%3D1')
})

t.test('Proxy websocket with custom upstream url (wsUpstream): its path is a base path here', async (t) => {
  const origin = await wsUpstream(t)
  const server = await proxyServer(t, { upstream: `ws://127.0.0.1:${origin.port}`, wsUpstream: `ws://127.0.0.1:${origin.port}/some/path`, websocket: true })
  await closeClient(await echoBoth(t, `ws://127.0.0.1:${server.port}/x`))
  // @fastify/http-proxy ignores wsUpstream's path (it would send `/x`); ours keeps it, as for `upstream`.
  t.equal(origin.handshakes[0].url, '/some/path/x')
})

t.test('multiple websocket upstreams with host constraints', async (t) => {
  const foo = await wsUpstream(t)
  const bar = await wsUpstream(t)
  const server = await proxyServer(t, [
    { upstream: `ws://127.0.0.1:${foo.port}`, websocket: true, constraints: { host: 'foo' } },
    { upstream: `ws://127.0.0.1:${bar.port}`, websocket: true, constraints: { host: 'bar' } }
  ])
  for (const [name, origin] of [['foo', foo], ['bar', bar]] as const) {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}`, { headers: { host: name } })
    await within(PROMPTLY, once(ws, 'open'), 'the WebSocket opened')
    ws.send(`hello ${name}`)
    const [reply] = await within(PROMPTLY, once(ws, 'message'), 'the next message') as [Buffer]
    t.equal(reply.toString(), `hello ${name}`)
    t.equal(origin.handshakes.length, 1, `${name} got its upgrade`)
    await closeClient(ws)
  }
})

t.test('per-message options are refused with the reason; frame-level ones ignored with a log line', async (t) => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ wsHooks: { onIncomingMessage: () => {} } }, /wsHooks: per-message hooks need a WebSocket parser/],
    [{ wsReconnect: { pingInterval: 1000 } }, /wsReconnect: a byte pipe cannot reconnect/],
    [{ wsServerOptions: { verifyClient: () => true } }, /wsServerOptions.verifyClient: .*onRequest or preHandler hook/],
    [{ wsClientOptions: { rejectUnauthorized: false }, tls: { rejectUnauthorized: true } }, /wsClientOptions.rejectUnauthorized: conflicts with tls.rejectUnauthorized/]
  ]
  for (const [extra, message] of cases) {
    const app = Fastify()
    app.register(proxy, { upstream: 'http://127.0.0.1:1', websocket: true, ...extra } as ProxyOptions)
    await t.rejects(async () => await app.ready(), { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION', message })
    await app.close()
  }
  const lines: Array<Record<string, unknown>> = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  await app.register(proxy, {
    upstream: 'http://127.0.0.1:1',
    websocket: true,
    wsHooks: { onIncomingMessage: undefined },
    wsServerOptions: { maxPayload: 1024 },
    wsClientOptions: { perMessageDeflate: false, headers: { a: '1' } }
  } as ProxyOptions)
  await app.ready()
  t.match(lines, [{ options: ['wsClientOptions.perMessageDeflate', 'wsServerOptions.maxPayload'], msg: /ignored: the WebSocket tunnel relays/ }])
  await app.close()
})

t.test('preRewrite cannot override the WebSocket upstream origin (ws-prefix-rewrite.js); a rewritten path is tunnelled', async (t) => {
  const configured = await wsUpstream(t)
  const attacker = await wsUpstream(t)
  const server = await proxyServer(t, {
    upstream: `ws://127.0.0.1:${configured.port}`,
    websocket: true,
    prefix: '/pub',
    rewritePrefix: '/internal',
    preRewrite: (url: string) => {
      if (url === '/pub/absolute') return `ws://127.0.0.1:${attacker.port}/internal`
      if (url === '/pub/malformed') return '/internal/%'
      if (url === '/pub/outside') return '/outside'
      if (url === '/pub/renamed') return '/pub/new-name'
      return url.replace('/pub', '')
    }
  })
  for (const path of [`/pub//127.0.0.1:${attacker.port}/internal`, '/pub/absolute', '/pub/malformed', '/pub/outside']) {
    t.equal(await rawUpgradeStatus(server.port, path), 'HTTP/1.1 400 Bad Request', path)
  }
  await closeClient(await echoBoth(t, `ws://127.0.0.1:${server.port}/pub/renamed`))
  t.same(configured.handshakes.map(r => r.url), ['/internal/new-name'], 'only the rewritten path reached the configured upstream')
  t.equal(attacker.handshakes.length, 0)
})

t.test('multiple websocket upstreams (/A, /A/B, /C/D, /C); keep proxy websocket pathname', async (t) => {
  const names = ['/A', '/A/B', '/C/D', '/C']
  const origins = await Promise.all(names.map(async () => await wsUpstream(t)))
  const server = await proxyServer(t, names.map((prefix, i) => ({ prefix, upstream: `ws://127.0.0.1:${origins[i].port}`, websocket: true })))
  for (const [i, name] of names.entries()) {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}${name}`)
    await within(PROMPTLY, once(ws, 'open'), 'the WebSocket opened')
    ws.send(`hello ${name}`)
    const [reply] = await within(PROMPTLY, once(ws, 'message'), 'the next message') as [Buffer]
    t.equal(reply.toString(), `hello ${name}`)
    t.equal(origins[i].handshakes.length, 1, `${name} reached its own upstream`)
    await closeClient(ws)
  }
  const origin = await wsUpstream(t)
  const kept = await proxyServer(t, { upstream: `ws://127.0.0.1:${origin.port}`, wsUpstream: `ws://127.0.0.1:${origin.port}`, websocket: true })
  await closeClient(await echoBoth(t, `ws://127.0.0.1:${kept.port}/keep/path`))
  t.equal(origin.handshakes[0].url, '/keep/path')
})

t.test('Should gracefully close when clients attempt to connect after calling close: refused here (503 there)', async (t) => {
  const origin = await wsUpstream(t)
  const app = Fastify()
  await app.register(proxy, { upstream: `ws://127.0.0.1:${origin.port}`, websocket: true })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = portOf(app.server)
  const originalClose = app.server.close.bind(app.server)
  let late: Promise<string> | null = null
  app.server.close = function (callback?: (err?: Error) => void) {
    // The drain stopped accepting connections when close() began (preClose), so that a load
    // balancer moves new clients elsewhere at once: a new connection is refused, not answered 503.
    const ws = new WebSocket(`ws://127.0.0.1:${port}`)
    late = (once(ws, 'open') as Promise<unknown>).then(() => 'opened', (err: Error & { code?: string }) => err.code ?? err.message)
    late.then(() => originalClose(callback), () => {})
    return app.server
  }
  const ws = new WebSocket(`ws://127.0.0.1:${port}`)
  await within(PROMPTLY, once(ws, 'open'), 'the WebSocket opened')
  const [[code]] = await within(PROMPTLY, Promise.all([once(ws, 'close') as Promise<[number]>, app.close()]), 'app.close() returned and closed the tunnel')
  t.equal(code, 1001, 'the open tunnel got Going Away')
  t.equal(await within(PROMPTLY, late ?? Promise.resolve('no late client'), 'the late client\'s connection was refused or answered'), 'ECONNREFUSED')
  t.equal(origin.handshakes.length, 1, 'the late client never reached the upstream')
})

/** A raw 'upgrade' listener added after the proxy, owning one path (ws-upgrade-prefix.js). */
function mountStandalone (t: Test, server: import('node:http').Server, ownedPath: string): void {
  const wss = new WebSocketServer({ noServer: true })
  wss.on('connection', (ws) => { ws.on('message', (message: Buffer) => ws.send(`standalone:${message.toString()}`)) })
  t.teardown(() => wss.close())
  server.on('upgrade', (request: import('node:http').IncomingMessage, socket: import('node:net').Socket, head: Buffer) => {
    if (request.url?.split('?', 1)[0] === ownedPath) wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request))
  })
}

async function prefixedEcho (t: Test): Promise<string> {
  const origin = await wsUpstream(t)
  origin.wss.removeAllListeners('connection')
  origin.wss.on('connection', (ws) => { ws.on('message', (message: Buffer) => ws.send(`proxied:${message.toString()}`)) })
  return `ws://127.0.0.1:${origin.port}`
}

async function talk (port: number, path: string): Promise<string> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`)
  await within(PROMPTLY, once(ws, 'open'), 'the WebSocket opened')
  ws.send('hello')
  const [reply] = await within(PROMPTLY, once(ws, 'message'), 'the next message') as [Buffer]
  await closeClient(ws)
  return reply.toString()
}

t.test('ws-upgrade-prefix.js: upgrades outside the prefixes are left to the app\'s own listener', async (t) => {
  const upstream = await prefixedEcho(t)
  const cases: Array<[ProxyOptions[], string, Array<[string, string]>]> = [
    [[{ prefix: '/proxied', upstream, websocket: true }], '/standalone', [['/standalone', 'standalone:hello'], ['/proxied', 'proxied:hello'], ['/proxied/nested', 'proxied:hello']]],
    [[{ prefix: '/pub/', upstream, websocket: true }], '/standalone', [['/standalone', 'standalone:hello'], ['/pub/nested', 'proxied:hello']]],
    [[{ upstream, websocket: true }], '/reserved', [['/anything', 'proxied:hello']]],
    [[{ prefix: '/pub', upstream, websocket: true }, { prefix: '/api', upstream, websocket: true }], '/standalone',
      [['/standalone', 'standalone:hello'], ['/pub/x', 'proxied:hello'], ['/api/x', 'proxied:hello']]]
  ]
  for (const [options, owned, paths] of cases) {
    const app = Fastify()
    for (const o of options) await app.register(proxy, o)
    await app.listen({ port: 0, host: '127.0.0.1' })
    mountStandalone(t, app.server, owned)
    for (const [path, expected] of paths) t.equal(await talk(portOf(app.server), path), expected, path)
    await app.close()
  }
})

t.test('websocket proxy trigger hooks: an app onRequest hook runs for the upgrade; captures errors on start', async (t) => {
  const origin = await wsUpstream(t)
  const app = Fastify()
  const hooked: string[] = []
  app.addHook('onRequest', async (request) => { hooked.push(request.url) })
  await app.register(proxy, { upstream: `ws://127.0.0.1:${origin.port}`, websocket: true })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  await closeClient(await echoBoth(t, `ws://127.0.0.1:${portOf(app.server)}/hooked`, [subprotocol], { cookie }))
  t.same(hooked, ['/hooked'])
  t.equal(origin.handshakes[0].headers.cookie, cookie)

  const second = Fastify()
  second.register(proxy, { upstream: 'ws://127.0.0.1', websocket: true })
  await t.rejects(async () => await second.listen({ port: portOf(app.server), host: '127.0.0.1' }), /EADDRINUSE/)
  await second.close()
})
