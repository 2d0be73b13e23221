// The proxy's WebSocket pass-through and @fastify/websocket in one app: each upgrade goes to
// its owner, an unknown path gets a 404, whichever plugin is registered first.
import { once } from 'node:events'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyWebsocket from '@fastify/websocket'
import t, { type Test } from 'tap'
import proxy from '../../plugins/proxy/index.js'
import { openClient, parseReply, portOf, rawClient, upgradeRequest, wsUpstream, type Teardown, type WsUpstream } from '../helpers/ws-servers.js'
import { PROMPTLY, until, within } from '../helpers/bounded.js'

/** A `ws` client through the app, open; bounded. */
async function openedAt (...args: Parameters<typeof openClient>): ReturnType<typeof openClient> {
  return await within(PROMPTLY, openClient(...args), `a WebSocket opened at ${args[0]}`)
}

async function ownRoutes (app: FastifyInstance): Promise<void> {
  await app.register(async (scope) => {
    scope.get('/chat', { websocket: true }, (socket) => {
      socket.on('message', (data) => socket.send(`own: ${String(data)}`))
    })
  })
}

async function buildApp (t: Teardown, upstream: string, websocketFirst: boolean): Promise<number> {
  const app = Fastify()
  if (websocketFirst) {
    await app.register(fastifyWebsocket)
    await ownRoutes(app)
  }
  await app.register(proxy, { upstream, prefix: '/ws', websocket: true, wsCloseGrace: 100 })
  if (!websocketFirst) {
    await app.register(fastifyWebsocket)
    await ownRoutes(app)
  }
  app.get('/plain', async () => 'plain')
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  return portOf(app.server)
}

/** Each plugin answers its own WebSocket: @fastify/websocket its route, the proxy its prefix. */
async function eachOwnerAnswers (t: Test, port: number, up: WsUpstream): Promise<void> {
  const own = await openedAt(`ws://127.0.0.1:${port}/chat`)
  t.teardown(() => own.terminate())
  own.send('hi')
  const [ownReply] = await within(PROMPTLY, once(own, 'message'), '@fastify/websocket answered its own route')
  t.equal(String(ownReply), 'own: hi', '@fastify/websocket answers its own route')
  t.equal(up.handshakes.length, 0, 'without the upstream hearing of it')

  const proxied = await openedAt(`ws://127.0.0.1:${port}/ws/echo`, ['a'])
  t.teardown(() => proxied.terminate())
  proxied.send('through')
  const [proxiedReply] = await within(PROMPTLY, once(proxied, 'message'), 'the echo through the tunnel')
  t.equal(String(proxiedReply), 'through', 'the upstream echoes through the tunnel')
  t.equal(up.handshakes.length, 1)
  t.equal(up.handshakes[0].url, '/echo')
}

/** Raw bytes: exactly one answer per upgrade, never a second one from another listener. */
async function oneAnswerPerUpgrade (t: Test, port: number, up: WsUpstream): Promise<void> {
  const raw = await rawClient(t, port)
  raw.socket.write(upgradeRequest('/nope'))
  await within(PROMPTLY, raw.closed, 'the proxy answered and closed the raw connection')
  const reply = parseReply(raw.received())
  t.equal(reply.status, 404, 'an unknown path gets a 404')
  t.equal(raw.received().toString('latin1').match(/HTTP\/1\.1 /g)?.length, 1, 'and only one response')
  t.equal(up.handshakes.length, 1, 'the upstream saw nothing of it')

  // A masked text frame 'hello' in the same write as the handshake: @fastify/websocket keeps
  // those bytes to itself, so this checks the proxy still finds and forwards them.
  const proxiedRaw = await rawClient(t, port)
  const frame = Buffer.from([0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e])
  proxiedRaw.socket.write(Buffer.concat([Buffer.from(upgradeRequest('/ws/raw')), frame]))
  const echo = Buffer.concat([Buffer.from([0x81, 0x05]), Buffer.from('hello')])
  const text = (await within(PROMPTLY, proxiedRaw.nextData(1), 'the answer to the raw upgrade')).toString('latin1')
  t.match(text, /^HTTP\/1\.1 101 /, 'a raw upgrade through the proxy gets the upstream\'s 101')
  const headLength = (await within(PROMPTLY, waitForHead(proxiedRaw.nextData), 'the whole 101 head')) + 4
  const got = await within(PROMPTLY, proxiedRaw.nextData(headLength + echo.length), 'the echo of the early frame')
  t.same(got.subarray(headLength), echo, 'the early frame reached the upstream, its echo came back, nothing else')
  t.equal(got.toString('latin1').match(/HTTP\/1\.1 /g)?.length, 1, 'one response only')
}

/**
 * @fastify/websocket routes every upgrade, so the proxy cannot hand these back to Node's
 * parser: they are refused before any body is read or the upstream contacted.
 */
async function unparseableUpgradesRefused (t: Test, port: number, up: WsUpstream): Promise<void> {
  let upstreamConnections = 0
  up.server.on('connection', () => { upstreamConnections++ })
  for (const request of [
    'POST /ws/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello',
    'GET /ws/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    'GET /ws/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 4\r\n\r\nbody'
  ]) {
    const invalid = await rawClient(t, port)
    invalid.socket.write(request)
    await within(PROMPTLY, invalid.closed, 'the proxy answered and closed the invalid connection')
    const answer = parseReply(invalid.received())
    t.equal(answer.status, 400, `${request.split('\r\n')[0]}: 400`)
    t.equal(JSON.parse(answer.body).code, 'FST_STREAMLINE_PROXY_INVALID_UPGRADE')
  }
  t.equal(upstreamConnections, 0, 'the upstream was not contacted')
}

for (const websocketFirst of [true, false]) {
  t.test(`own routes, proxied prefix and unknown paths in one app (@fastify/websocket registered ${websocketFirst ? 'first' : 'last'})`, async (t) => {
    const up = await wsUpstream(t)
    const port = await buildApp(t, up.url, websocketFirst)
    await eachOwnerAnswers(t, port, up)
    await oneAnswerPerUpgrade(t, port, up)
    await unparseableUpgradesRefused(t, port, up)
  })
}

async function waitForHead (nextData: (min: number) => Promise<Buffer>): Promise<number> {
  let bytes = await nextData(1)
  while (bytes.toString('latin1').indexOf('\r\n\r\n') === -1) bytes = await nextData(bytes.length + 1)
  return bytes.toString('latin1').indexOf('\r\n\r\n')
}

t.test('without @fastify/websocket, upgrades to the app\'s own routes and unknown paths get one plain answer', async (t) => {
  const up = await wsUpstream(t)
  const app = Fastify()
  await app.register(proxy, { upstream: up.url, prefix: '/ws', websocket: true, wsCloseGrace: 100 })
  app.get('/plain', async () => 'plain answer')
  app.post('/echo', async (request) => request.body)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  const port = portOf(app.server)
  for (const [path, status] of [['/plain', 200], ['/nope', 404]] as const) {
    const raw = await rawClient(t, port)
    raw.socket.write(upgradeRequest(path) + 'EARLY')
    await within(PROMPTLY, raw.closed, 'the proxy answered and closed the raw connection')
    const reply = parseReply(raw.received())
    t.equal(reply.status, status, `${path}: ${status}`)
    t.match(reply.head, /\r\nconnection: close\r\n/i, 'and the connection closes')
    t.equal(raw.received().toString('latin1').match(/HTTP\/1\.1 /g)?.length, 1, 'one response only')
  }
  // curl --http2 -d ... on http:// sends this: it must be served as if no upgrade listener existed.
  const h2c = await rawClient(t, port)
  const body = '{"a":1}'
  const post = `POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`
  h2c.socket.write(post + 'GET /plain HTTP/1.1\r\nHost: a\r\n\r\n')
  await until(PROMPTLY, () => h2c.received().includes('plain answer'), 'the answers to the POST with Upgrade: h2c and the GET after it')
  const text = h2c.received().toString('latin1')
  t.match(text, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n\{"a":1\}HTTP\/1\.1 200 OK\r\n/, 'the POST was served with its body, and the connection kept alive for the next request')
  t.notMatch(text, /connection: close/i)

  const proxied = await openedAt(`ws://127.0.0.1:${port}/ws/echo`)
  t.teardown(() => proxied.terminate())
  proxied.send('through')
  const [message] = await within(PROMPTLY, once(proxied, 'message'), 'the echo through the tunnel')
  t.equal(String(message), 'through')
  t.equal(up.handshakes.length, 1, 'only the proxied upgrade reached the upstream')
})
