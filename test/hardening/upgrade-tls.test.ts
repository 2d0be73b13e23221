// Upgrades over TLS, on an https server and on an http2 secure server with allowHTTP1: a
// non-WebSocket upgrade is served as a plain request on the same TLS connection (no second
// handshake), pipelined upgrades keep their order, and WebSocket works over wss://.
import { once } from 'node:events'

import https from 'node:https'
import tls, { type TLSSocket } from 'node:tls'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import t from 'tap'
import { openClient, proxyApp, upgradeRequest, type Teardown } from '../helpers/ws-servers.js'
import { answersFor, ECHO, FRAME, get, H2C, POST_UPGRADE, upgradeUpstream, type UpgradeUpstream, type Client } from '../helpers/pipeline.js'
import { selfSignedCertificate } from '../helpers/tls.js'
import { within } from '../helpers/bounded.js'

/** A raw TLS client speaking HTTP/1.1 (by ALPN, which http2's allowHTTP1 fallback goes by). */
async function tlsClient (t: Teardown, port: number, ca: Buffer): Promise<Client & { socket: TLSSocket }> {
  const socket = tls.connect({ port, host: '127.0.0.1', ca, ALPNProtocols: ['http/1.1'] })
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  socket.on('error', () => {})
  t.teardown(() => socket.destroy())
  await within(10_000, once(socket, 'secureConnect'), 'the TLS handshake')
  return { socket, received: () => Buffer.concat(chunks) }
}

const servers = {
  https: (cert: { key: Buffer, cert: Buffer }) => ({ https: cert }),
  'http2 with allowHTTP1': (cert: { key: Buffer, cert: Buffer }) => ({ http2: true, https: { allowHTTP1: true, ...cert } })
}

async function setup (t: Teardown, kind: keyof typeof servers): Promise<{ up: UpgradeUpstream, app: FastifyInstance, port: number, ca: Buffer, idle: () => Promise<void> }> {
  const cert = selfSignedCertificate(t)
  const up = await upgradeUpstream(t)
  const { app, port } = await proxyApp(t, { upstream: up.url, fastify: servers[kind](cert) as FastifyServerOptions })
  const connections = async (): Promise<number> => await new Promise((resolve, reject) => {
    app.server.getConnections((err, count) => err === null ? resolve(count) : reject(err))
  })
  const idle = async (): Promise<void> => {
    // Closed connections are counted down on a later turn of the event loop; bounded.
    const until = Date.now() + 10_000
    while ((await connections()) > 0 || up.tunnels.size > 0) {
      if (Date.now() > until) throw new Error('connections still open after 10 s')
      await new Promise(resolve => setTimeout(resolve, 10))
    }
  }
  return { up, app, port, ca: cert.cert, idle }
}

/** The process survived and still serves a fresh HTTPS connection. */
async function alive (port: number, ca: Buffer): Promise<string> {
  return await within(10_000, new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: '/ws/health', ca, agent: false }, res => {
      let body = ''
      res.setEncoding('latin1')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => resolve(body))
    }).on('error', reject)
  }), 'the answer to /health')
}

for (const kind of Object.keys(servers) as Array<keyof typeof servers>) {
  t.test(`${kind}: a non-WebSocket upgrade is served as a plain request on the same TLS connection`, async (t) => {
    const { up, port, ca, idle } = await setup(t, kind)
    const client = await tlsClient(t, port, ca)
    client.socket.write(H2C + get('/ws/c') + POST_UPGRADE + get('/ws/e'))
    const { answers } = await answersFor(client, ['GET', 'GET', 'POST', 'GET'])
    t.same(answers.map(a => a.status), [200, 200, 200, 200])
    t.same(answers.map(a => a.body), ['answer GET /x', 'answer GET /c', 'answer POST /p', 'answer GET /e'], 'every answer, in order')
    // Pipelined requests are forwarded concurrently: the upstream may see them in any order.
    t.same([...up.seen].sort(), ['GET /c', 'GET /e', 'GET /x', 'POST /p body=hello'], 'the upstream got plain requests, without Upgrade, the body included')
    t.same(up.upgrades, [], 'no upgrade reached the upstream')
    client.socket.destroy()
    await idle()
    t.equal(await alive(port, ca), 'answer GET /health', 'the process still serves')
  })

  t.test(`${kind}: a plain request then a WebSocket upgrade and a frame, pipelined over TLS`, async (t) => {
    const { up, port, ca, idle } = await setup(t, kind)
    const client = await tlsClient(t, port, ca)
    client.socket.write(Buffer.concat([Buffer.from(get('/ws/a') + upgradeRequest('/ws/echo')), FRAME]))
    const { answers, rest } = await answersFor(client, ['GET', 'GET'], ECHO.length)
    t.same(answers.map(a => a.status), [200, 101], 'the first answer, then the switch')
    t.equal(answers[0].body, 'answer GET /a')
    t.same(rest, ECHO, 'the frame went through the tunnel and its echo came back')
    t.same(up.seen, ['GET /a'])
    t.same(up.upgrades, ['/echo'])
    client.socket.destroy()
    await idle()
    t.equal(await alive(port, ca), 'answer GET /health', 'the process still serves')
  })

  t.test(`${kind}: WebSocket over wss:// with the ws client`, async (t) => {
    const { up, port, ca, idle } = await setup(t, kind)
    const ws = await within(10_000, openClient(`wss://127.0.0.1:${port}/ws/chat`, undefined, { ca }), 'an open wss tunnel')
    ws.send('over tls')
    const [message] = await within(10_000, once(ws, 'message'), 'the echo through the tunnel')
    t.equal(String(message), 'over tls', 'echoed through the tunnel')
    t.same(up.upgrades, ['/chat'], 'the upstream got the handshake')
    ws.close()
    const [code] = await within(10_000, once(ws, 'close'), 'the close handshake') as [number]
    t.equal(code, 1005, 'the close handshake completed (no status, as the client sent none)')
    await idle()
    t.equal(await alive(port, ca), 'answer GET /health', 'the process still serves')
  })
}
