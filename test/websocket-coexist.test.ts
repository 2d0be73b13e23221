// The proxy's WebSocket pass-through and @fastify/websocket in one app: each upgrade goes to
// its owner, an unknown path gets a 404, whichever plugin is registered first.
import { once } from 'node:events'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyWebsocket from '@fastify/websocket'
import t from 'tap'
import proxy from '../plugins/proxy/index.js'
import { openClient, parseReply, portOf, rawClient, upgradeRequest, wsUpstream, type Teardown } from './helpers/ws-servers.js'

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

for (const websocketFirst of [true, false]) {
  t.test(`own routes, proxied prefix and unknown paths in one app (@fastify/websocket registered ${websocketFirst ? 'first' : 'last'})`, async (t) => {
    const up = await wsUpstream(t)
    const port = await buildApp(t, up.url, websocketFirst)

    const own = await openClient(`ws://127.0.0.1:${port}/chat`)
    t.teardown(() => own.terminate())
    own.send('hi')
    const [ownReply] = await once(own, 'message')
    t.equal(String(ownReply), 'own: hi', '@fastify/websocket answers its own route')
    t.equal(up.handshakes.length, 0, 'without the upstream hearing of it')

    const proxied = await openClient(`ws://127.0.0.1:${port}/ws/echo`, ['a'])
    t.teardown(() => proxied.terminate())
    proxied.send('through')
    const [proxiedReply] = await once(proxied, 'message')
    t.equal(String(proxiedReply), 'through', 'the upstream echoes through the tunnel')
    t.equal(up.handshakes.length, 1)
    t.equal(up.handshakes[0].url, '/echo')

    // Raw bytes: exactly one answer per upgrade, never a second one from another listener.
    const raw = await rawClient(t, port)
    raw.socket.write(upgradeRequest('/nope'))
    await raw.closed
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
    const text = (await proxiedRaw.nextData(1)).toString('latin1')
    t.match(text, /^HTTP\/1\.1 101 /, 'a raw upgrade through the proxy gets the upstream\'s 101')
    const headLength = (await waitForHead(proxiedRaw.nextData)) + 4
    const got = await proxiedRaw.nextData(headLength + echo.length)
    t.same(got.subarray(headLength), echo, 'the early frame reached the upstream, its echo came back, nothing else')
    t.equal(got.toString('latin1').match(/HTTP\/1\.1 /g)?.length, 1, 'one response only')
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
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  const port = portOf(app.server)
  for (const [path, status] of [['/plain', 200], ['/nope', 404]] as const) {
    const raw = await rawClient(t, port)
    raw.socket.write(upgradeRequest(path) + 'EARLY')
    await raw.closed
    const reply = parseReply(raw.received())
    t.equal(reply.status, status, `${path}: ${status}`)
    t.match(reply.head, /\r\nconnection: close\r\n/i, 'and the connection closes')
    t.equal(raw.received().toString('latin1').match(/HTTP\/1\.1 /g)?.length, 1, 'one response only')
  }
  const proxied = await openClient(`ws://127.0.0.1:${port}/ws/echo`)
  t.teardown(() => proxied.terminate())
  proxied.send('through')
  const [message] = await once(proxied, 'message')
  t.equal(String(message), 'through')
  t.equal(up.handshakes.length, 1, 'only the proxied upgrade reached the upstream')
})
