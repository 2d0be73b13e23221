// Upgrade requests pipelined behind plain requests on one keep-alive connection, with
// `websocket: true` and no other upgrade listener: every request gets its answer, in order,
// whether the bytes come in one write, byte by byte, or while an earlier answer is pending.
import type http from 'node:http'
import type { Socket } from 'node:net'
import t from 'tap'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { proxyApp, rawClient, upgradeRequest, type Teardown } from '../helpers/ws-servers.js'
import {
  answersFor, BIG, ECHO, FRAME, get, H2C, NO_KEY, POST_UPGRADE, upgradeUpstream, type UpgradeUpstream, splitAnswers, type Answer, type Client
} from '../helpers/pipeline.js'
import { within } from '../helpers/bounded.js'

/** The proxy's own side of the client's connection, to know when it has read the client's bytes. */
function serverSideSockets (server: http.Server): Socket[] {
  const sockets: Socket[] = []
  server.on('connection', (socket: Socket) => sockets.push(socket))
  return sockets
}

async function until (condition: () => boolean | Promise<boolean>): Promise<void> {
  // Polls something that has no event (bytes read by the proxy, a connection count); bounded.
  const deadline = Date.now() + 10_000
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met within 10 s')
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

async function setup (t: Teardown, before?: (app: FastifyInstance) => void, fastify?: FastifyServerOptions): Promise<{ up: UpgradeUpstream, port: number, accepted: Socket[], idle: () => Promise<void>, alive: () => Promise<void> }> {
  const up = await upgradeUpstream(t)
  const { app, port } = await proxyApp(t, { upstream: up.url, before, fastify })
  const accepted = serverSideSockets(app.server)
  const connections = async (): Promise<number> => await new Promise((resolve, reject) => {
    app.server.getConnections((err, count) => err === null ? resolve(count) : reject(err))
  })
  return {
    up,
    port,
    accepted,
    // Every client connection and every tunnel to the upstream closed.
    idle: async () => await until(async () => (await connections()) === 0 && up.tunnels.size === 0),
    // The process survived and still serves a fresh connection.
    alive: async () => {
      const client = await rawClient(t, port)
      client.socket.write(get('/ws/health', 'Connection: close\r\n'))
      await within(10_000, client.closed, 'the close after /health with Connection: close')
      if (!client.received().toString('latin1').includes('answer GET /health')) throw new Error('the proxy no longer answers')
    }
  }
}

async function expectTunnel (t: Teardown & { same: (a: unknown, b: unknown, m: string) => void }, client: Client, methods: string[], early: boolean): Promise<Answer[]> {
  const { answers, rest } = await answersFor(client, methods, early ? ECHO.length : 0)
  if (!early) {
    client.socket.write(FRAME)
    const more = await answersFor(client, methods, ECHO.length)
    t.same(more.rest, ECHO, 'the tunnel carries a frame after the 101, and its echo back')
    return more.answers
  }
  t.same(rest, ECHO, 'the frame sent with the handshake went through the tunnel, and its echo came back')
  return answers
}

t.test('a plain request then a WebSocket upgrade and a frame, in one write', async (t) => {
  const { up, port, idle, alive } = await setup(t)
  const client = await rawClient(t, port)
  client.socket.write(Buffer.concat([Buffer.from(get('/ws/a') + upgradeRequest('/ws/echo')), FRAME]))
  const answers = await expectTunnel(t, client, ['GET', 'GET'], true)
  t.same(answers.map(a => a.status), [200, 101], 'the first answer, then the switch')
  t.equal(answers[0].body, 'answer GET /a')
  t.same(up.seen, ['GET /a'], 'the upstream served the plain request')
  t.same(up.upgrades, ['/echo'], 'and got the handshake after it')
  client.socket.destroy()
  await idle()
  await alive()
})

t.test('a WebSocket upgrade sent while the first answer is pending', async (t) => {
  const { up, port, accepted, idle, alive } = await setup(t)
  const client = await rawClient(t, port)
  client.socket.write(get('/ws/slow'))
  await up.slowArrived()
  const upgrade = upgradeRequest('/ws/echo')
  client.socket.write(upgrade)
  const total = get('/ws/slow').length + upgrade.length
  await until(() => accepted[0].bytesRead >= total)
  t.same(up.upgrades, [], 'the upgrade waits for the pending answer')
  up.release()
  const answers = await expectTunnel(t, client, ['GET', 'GET'], false)
  t.same(answers.map(a => a.status), [200, 101])
  t.equal(answers[0].body, 'answer GET /slow')
  t.same(up.seen, ['GET /slow'])
  t.same(up.upgrades, ['/echo'])
  client.socket.destroy()
  await idle()
  await alive()
})

t.test('HEAD, then a large streamed answer, then a WebSocket upgrade, in one write', async (t) => {
  const { up, port, idle, alive } = await setup(t)
  const client = await rawClient(t, port)
  client.socket.write(`HEAD /ws/a HTTP/1.1\r\nHost: a\r\n\r\n${get('/ws/big')}${upgradeRequest('/ws/echo')}`)
  const answers = await expectTunnel(t, client, ['HEAD', 'GET', 'GET'], false)
  t.same(answers.map(a => a.status), [200, 200, 101])
  t.equal(answers[0].body, '', 'HEAD: no body')
  t.equal(answers[1].body.length, BIG, 'the large answer arrived whole before the switch')
  t.same(up.seen, ['HEAD /a', 'GET /big'])
  t.same(up.upgrades, ['/echo'])
  client.socket.destroy()
  await idle()
  await alive()
})

t.test('plain, h2c upgrade, plain: three answers in order, the connection stays usable', async (t) => {
  for (const mode of ['one write', 'byte by byte'] as const) {
    const { up, port, accepted, idle, alive } = await setup(t)
    const client = await rawClient(t, port)
    client.socket.setNoDelay(true)
    const bytes = Buffer.from(get('/ws/a') + H2C + get('/ws/c'))
    if (mode === 'one write') client.socket.write(bytes)
    else {
      for (const byte of bytes) {
        await new Promise<void>((resolve, reject) => client.socket.write(Buffer.from([byte]), err => err == null ? resolve() : reject(err)))
      }
    }
    const { answers } = await answersFor(client, ['GET', 'GET', 'GET'])
    t.same(answers.map(a => a.body), ['answer GET /a', 'answer GET /x', 'answer GET /c'], `${mode}: every answer, in order`)
    t.same(up.seen, ['GET /a', 'GET /x', 'GET /c'], `${mode}: the upstream got the h2c request as plain, without Upgrade`)
    t.same(up.upgrades, [], `${mode}: no upgrade reached the upstream`)
    // Node's parser on the connection again, and none of the listeners that waited for it.
    t.same(['drain', 'error', 'close', 'timeout'].map(name => accepted[0].listenerCount(name)), [1, 1, 2, 1], `${mode}: one listener of each kind on the socket, Node's (and the drain's connection tracker on 'close')`)
    client.socket.write(get('/ws/d', 'Connection: close\r\n'))
    await within(10_000, client.closed, 'the server closing the connection')
    t.equal(splitAnswers(client.received(), ['GET', 'GET', 'GET', 'GET']).answers[3]?.body, 'answer GET /d', `${mode}: a later request on the connection is served`)
    await idle()
    await alive()
  }
})

t.test('the keep-alive timeout armed by the answer before a re-parsed request does not cut it', async (t) => {
  // Node arms keepAliveTimeout (+1 s) when the last pending answer is written; a request read
  // from a connection disarms it. Here the request was read before and served after.
  const { up, port, idle, alive } = await setup(t, undefined, { keepAliveTimeout: 100 })
  const client = await rawClient(t, port)
  client.socket.write(get('/ws/a') + H2C.replace('/ws/x', '/ws/slow'))
  await up.slowArrived()
  await answersFor(client, ['GET'])
  // Longer than 100 ms + Node's 1 s margin: proving something does not happen takes time.
  await new Promise(resolve => setTimeout(resolve, 2500))
  up.release()
  const { answers } = await answersFor(client, ['GET', 'GET'])
  t.same(answers.map(a => a.body), ['answer GET /a', 'answer GET /slow'], 'the slow answer still arrived')
  client.socket.destroy()
  await idle()
  await alive()
})

t.test('plain, POST with Upgrade: websocket and a body, plain: three answers in order', async (t) => {
  const { up, port, accepted, idle, alive } = await setup(t)
  const client = await rawClient(t, port)
  // Spread over time: the POST and the third request arrive while the first answer is pending.
  client.socket.write(get('/ws/slow'))
  await up.slowArrived()
  client.socket.write(POST_UPGRADE + get('/ws/c', 'Connection: close\r\n'))
  await until(() => accepted[0].bytesRead >= get('/ws/slow').length + POST_UPGRADE.length + get('/ws/c', 'Connection: close\r\n').length)
  up.release()
  await within(10_000, client.closed, 'the server closing the connection')
  const { answers } = splitAnswers(client.received(), ['GET', 'POST', 'GET'])
  t.same(answers.map(a => a.body), ['answer GET /slow', 'answer POST /p', 'answer GET /c'], 'every answer, in order')
  // The proxy forwards pipelined requests concurrently: the upstream may see them in any order.
  t.same([...up.seen].sort(), ['GET /c', 'GET /slow', 'POST /p body=hello'], 'the POST reached the upstream with its body, without Upgrade')
  t.same(up.upgrades, [])
  await idle()
  await alive()
})

t.test('plain then a WebSocket upgrade without a key: the upstream\'s refusal, after the first answer', async (t) => {
  const { up, port, idle, alive } = await setup(t)
  const client = await rawClient(t, port)
  client.socket.write(get('/ws/a') + NO_KEY)
  await within(10_000, client.closed, 'the server closing the connection')
  const { answers } = splitAnswers(client.received(), ['GET', 'GET'])
  t.same(answers.map(a => a.status), [200, 400])
  t.equal(answers[0].body, 'answer GET /a')
  t.match(answers[1].head, /\r\nconnection: close\r\n/i, 'the refusal is the connection\'s last answer')
  t.same(up.seen, ['GET /a'])
  t.same(up.upgrades, ['/nokey'], 'the handshake went upstream, which refused it')
  await idle()
  await alive()
})

t.test('an upgrade pipelined after an answer that closes the connection is dropped', async (t) => {
  const { up, port, idle, alive } = await setup(t, app => {
    app.get('/bye', async (_request, reply) => await reply.header('connection', 'close').send('bye'))
  })
  const client = await rawClient(t, port)
  client.socket.write(get('/bye') + upgradeRequest('/ws/echo') + H2C)
  await within(10_000, client.closed, 'the server closing the connection')
  const { answers, rest } = splitAnswers(client.received(), ['GET'])
  t.equal(answers[0]?.body, 'bye', 'the first request is answered')
  t.match(answers[0]?.head, /\r\nconnection: close\r\n/i)
  t.equal(rest.length, 0, 'and nothing else')
  t.same(up.seen, [])
  t.same(up.upgrades, [], 'the upgrade never reached the upstream')
  await idle()
  await alive()
})

t.test('the client going away while its upgrade waits leaves nothing behind', async (t) => {
  for (const how of ['reset', 'close'] as const) {
    const { up, port, accepted, idle, alive } = await setup(t)
    const client = await rawClient(t, port)
    const bytes = get('/ws/slow') + upgradeRequest('/ws/echo')
    client.socket.write(bytes)
    await up.slowArrived()
    await until(() => accepted[0].bytesRead >= bytes.length)
    if (how === 'reset') {
      client.socket.resetAndDestroy()
      // A reset is seen at once; a FIN is not, as nothing reads the socket while the upgrade
      // waits (its bytes belong to the upgrade): Node too finishes pending answers first.
      await until(() => accepted[0].destroyed)
      t.same(accepted[0].listenerCount('drain') + accepted[0].listenerCount('error'), 0, `${how}: no listener of ours left on the socket`)
    } else client.socket.destroy()
    up.release()
    await idle()
    t.same(up.seen, ['GET /slow'], `${how}: the upstream served the pending request`)
    if (how === 'reset') t.same(up.upgrades, [], `${how}: the upgrade never reached the upstream`)
    await alive()
  }
})
