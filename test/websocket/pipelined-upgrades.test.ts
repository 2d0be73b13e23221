// Upgrades pipelined behind a plain request on one keep-alive connection, with @fastify/websocket
// registered beside the proxy (docs/websockets.md): both the proxy's prefix and the app's own
// WebSocket route get their 101 after the plain answer, in one write or many, over TCP and TLS;
// @fastify/websocket never sees the upgrade while an answer before it is pending (it would drop
// it); a connection whose client leaves is released. Without @fastify/websocket:
// test/hardening/upgrade-pipeline.test.ts.
import type { Socket } from 'node:net'
import tls from 'node:tls'
import { once } from 'node:events'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fastifyWebsocket from '@fastify/websocket'
import t from 'tap'
import proxy from '../../plugins/proxy/index.js'
import { portOf, rawClient, upgradeRequest, type Teardown } from '../helpers/ws-servers.js'
import { answersFor, ECHO, FRAME, get, splitAnswers, upgradeUpstream, type Client, type UpgradeUpstream } from '../helpers/pipeline.js'
import { selfSignedCertificate } from '../helpers/tls.js'
import { until, within } from '../helpers/bounded.js'

interface Setup {
  up: UpgradeUpstream
  app: FastifyInstance
  port: number
  /** The server's side of each client connection (TCP, under TLS too). */
  accepted: Socket[]
  /** Messages the app's own WebSocket route received. */
  own: string[]
  /** Warnings the app logged (@fastify/websocket logs a dropped upgrade as one). */
  warnings: string[]
  /** Every client connection and every tunnel to the upstream closed; bounded. */
  idle: () => Promise<void>
}

async function setup (t: Teardown, options: { websocketFirst?: boolean, fastify?: FastifyServerOptions } = {}): Promise<Setup> {
  const up = await upgradeUpstream(t)
  const warnings: string[] = []
  const own: string[] = []
  const app = Fastify({ ...options.fastify, logger: { level: 'warn', stream: { write: (line: string) => warnings.push(line) } } })
  const ownRoute = async (): Promise<void> => {
    await app.register(fastifyWebsocket)
    app.get('/own/echo', { websocket: true }, (socket) => {
      socket.on('message', (data, isBinary) => {
        own.push(String(data))
        socket.send(data, { binary: isBinary })
      })
    })
  }
  if (options.websocketFirst === true) await ownRoute()
  await app.register(proxy, { upstream: up.url, prefix: '/ws', websocket: true, wsCloseGrace: 100 })
  if (options.websocketFirst !== true) await ownRoute()
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  const accepted: Socket[] = []
  app.server.on('connection', (socket: Socket) => accepted.push(socket))
  const connections = async (): Promise<number> => await new Promise((resolve, reject) => {
    app.server.getConnections((err, count) => err === null ? resolve(count) : reject(err))
  })
  const idle = async (): Promise<void> => {
    // getConnections has no event; polled, bounded.
    const stop = Date.now() + 10_000
    let count = await connections()
    while (count > 0 || up.tunnels.size > 0) {
      if (Date.now() > stop) throw new Error(`not within 10000 ms: ${count} client connections and ${up.tunnels.size} upstream tunnels still open`)
      await new Promise(resolve => setTimeout(resolve, 10))
      count = await connections()
    }
  }
  return { up, app, port: portOf(app.server), accepted, own, warnings, idle }
}

const targets = [
  {
    name: 'the proxy\'s prefix',
    path: '/ws/echo',
    upstream: ['upgrade /echo'],
    own: [],
    // The proxy reads the client while its handshake is under way, and a FIN then is a client gone.
    halfClosed: [200],
    halfClosedWhy: 'the plain answer, then the connection reset, without a 101 (the client left during the handshake)'
  },
  {
    name: 'the app\'s own @fastify/websocket route',
    path: '/own/echo',
    upstream: [],
    own: ['hello'],
    // ws answers the handshake before it reads, then sees the FIN and closes.
    halfClosed: [200, 101],
    halfClosedWhy: 'the plain answer, then the switch, then the close'
  }
]

/** The warnings about an upgrade @fastify/websocket could not route. */
function dropped (warnings: string[]): string[] {
  return warnings.filter(line => line.includes('websocket upgrade failed'))
}

/** Writes `bytes` in writes of `size` bytes, each one sent on its own (no Nagle). */
async function inSmallWrites (socket: Socket, bytes: Buffer, size: number): Promise<void> {
  socket.setNoDelay(true)
  for (let at = 0; at < bytes.length; at += size) {
    await new Promise<void>((resolve, reject) => socket.write(bytes.subarray(at, at + size), err => err == null ? resolve() : reject(err)))
  }
}

t.test('a plain request, then a WebSocket upgrade and a frame, in one write', async (t) => {
  for (const websocketFirst of [false, true]) {
    for (const target of targets) {
      const label = `${target.name}, @fastify/websocket registered ${websocketFirst ? 'first' : 'second'}`
      const { up, accepted, own, port, warnings, idle } = await setup(t, { websocketFirst })
      const client = await rawClient(t, port)
      client.socket.write(Buffer.concat([Buffer.from(get('/ws/a') + upgradeRequest(target.path)), FRAME]))
      const { answers, rest } = await answersFor(client, ['GET', 'GET'], ECHO.length)
      t.same(answers.map(a => a.status), [200, 101], `${label}: the plain answer, then the switch`)
      t.equal(answers[0].body, 'answer GET /a', `${label}: the plain answer's body`)
      t.same(rest, ECHO, `${label}: the frame sent with the handshake came back, echoed`)
      t.same(up.log, ['GET /a', ...target.upstream], `${label}: the upstream saw the plain request, then the upgrade if it was the proxy's`)
      t.same(own, target.own, `${label}: the app's route got the frame if it was the app's`)
      t.same(dropped(warnings), [], `${label}: @fastify/websocket dropped nothing`)
      client.socket.destroy()
      await idle()
      t.ok(accepted[0].destroyed, `${label}: the server's socket is closed`)
    }
  }
})

t.test('a slow plain request, then a WebSocket upgrade and a frame, in writes of 5 bytes', async (t) => {
  for (const target of targets) {
    const { up, accepted, own, port, warnings, idle } = await setup(t)
    const client = await rawClient(t, port)
    const bytes = Buffer.concat([Buffer.from(get('/ws/slow') + upgradeRequest(target.path)), FRAME])
    await inSmallWrites(client.socket, bytes, 5)
    await up.slowArrived()
    await until(10_000, () => accepted[0].bytesRead >= bytes.length, 'the proxy reading every byte the client sent')
    t.same(up.log, ['GET /slow'], `${target.name}: the upgrade waits for the pending answer`)
    t.equal(client.received().length, 0, `${target.name}: nothing answered yet`)
    up.release()
    const { answers, rest } = await answersFor(client, ['GET', 'GET'], ECHO.length)
    t.same(answers.map(a => a.status), [200, 101], `${target.name}: the plain answer, then the switch`)
    t.equal(answers[0].body, 'answer GET /slow')
    t.same(rest, ECHO, `${target.name}: the frame came back, echoed`)
    t.same(up.log, ['GET /slow', ...target.upstream], `${target.name}: what the upstream saw, in order`)
    t.same(own, target.own, `${target.name}: what the app's route got`)
    t.same(dropped(warnings), [], `${target.name}: @fastify/websocket dropped nothing`)
    client.socket.destroy()
    await idle()
  }
})

const tlsServers = {
  https: (cert: { key: Buffer, cert: Buffer }) => ({ https: cert }),
  'http2 with allowHTTP1': (cert: { key: Buffer, cert: Buffer }) => ({ http2: true, https: { allowHTTP1: true, ...cert } })
}

async function tlsClient (t: Teardown, port: number, ca: Buffer): Promise<Client> {
  const socket = tls.connect({ port, host: '127.0.0.1', ca, ALPNProtocols: ['http/1.1'] })
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.on('error', () => {})
  t.teardown(() => socket.destroy())
  await within(10_000, once(socket, 'secureConnect'), 'the TLS handshake')
  return { socket, received: () => Buffer.concat(chunks) }
}

for (const kind of Object.keys(tlsServers) as Array<keyof typeof tlsServers>) {
  t.test(`${kind}: a plain request, then a WebSocket upgrade and a frame, in one TLS write`, async (t) => {
    const cert = selfSignedCertificate(t)
    for (const target of targets) {
      const { up, own, port, warnings, idle } = await setup(t, { fastify: tlsServers[kind](cert) as FastifyServerOptions })
      const client = await tlsClient(t, port, cert.cert)
      client.socket.write(Buffer.concat([Buffer.from(get('/ws/a') + upgradeRequest(target.path)), FRAME]))
      const { answers, rest } = await answersFor(client, ['GET', 'GET'], ECHO.length)
      t.same(answers.map(a => a.status), [200, 101], `${target.name}: the plain answer, then the switch`)
      t.equal(answers[0].body, 'answer GET /a')
      t.same(rest, ECHO, `${target.name}: the frame came back, echoed`)
      t.same(up.log, ['GET /a', ...target.upstream], `${target.name}: what the upstream saw, in order`)
      t.same(own, target.own, `${target.name}: what the app's route got`)
      t.same(dropped(warnings), [], `${target.name}: @fastify/websocket dropped nothing`)
      client.socket.destroy()
      await idle()
    }
  })
}

t.test('the client leaving once the plain answer came releases the connection', async (t) => {
  for (const target of targets) {
    const { up, accepted, port, idle } = await setup(t)
    const client = await rawClient(t, port)
    client.socket.write(get('/ws/a') + upgradeRequest(target.path))
    const { answers } = await answersFor(client, ['GET'])
    t.equal(answers[0].body, 'answer GET /a', `${target.name}: the plain answer`)
    client.socket.destroy()
    await idle()
    t.ok(accepted[0].destroyed, `${target.name}: the server's socket is closed`)
    t.equal(up.seen[0], 'GET /a', `${target.name}: the upstream served the plain request`)
  }
})

t.test('the client leaving while its upgrade is held leaves nothing behind', async (t) => {
  for (const target of targets) {
    for (const how of ['reset', 'close', 'half-close'] as const) {
      const label = `${target.name}, ${how}`
      const { up, accepted, own, port, idle } = await setup(t)
      const client = await rawClient(t, port)
      const bytes = get('/ws/slow') + upgradeRequest(target.path)
      client.socket.write(bytes)
      await up.slowArrived()
      await until(10_000, () => accepted[0].bytesRead >= bytes.length, 'the proxy reading every byte the client sent')
      if (how === 'reset') {
        client.socket.resetAndDestroy()
        await until(10_000, () => accepted[0].destroyed, `${label}: the server's socket destroyed on the reset`)
      } else if (how === 'close') client.socket.destroy()
      else client.socket.end()
      up.release()
      if (how === 'half-close') {
        await within(10_000, client.closed, `${label}: the server closing the connection`)
        const { answers } = splitAnswers(client.received(), ['GET', 'GET'])
        t.same(answers.map(a => a.status), target.halfClosed, `${label}: ${target.halfClosedWhy}`)
      }
      await idle()
      t.ok(accepted[0].destroyed, `${label}: the server's socket is closed`)
      t.equal(up.seen[0], 'GET /slow', `${label}: the upstream served the pending request`)
      if (how === 'reset') t.same(up.upgrades, [], `${label}: the upgrade never reached the upstream`)
      t.same(own, [], `${label}: no message reached the app's route`)
    }
  }
})
