// Upgrade requests pipelined behind plain requests on one keep-alive connection, with
// `websocket: true` and no other upgrade listener: every request gets its answer, in order,
// whether the bytes come in one write, byte by byte, or while an earlier answer is pending.
import http from 'node:http'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { WebSocketServer } from 'ws'
import t from 'tap'
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import { portOf, proxyApp, rawClient, upgradeRequest, type Teardown } from '../helpers/ws-servers.js'

/** A masked text frame 'hello' (RFC 6455 5.7) and the upstream's unmasked echo of it. */
const FRAME = Buffer.from([0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e])
const ECHO = Buffer.concat([Buffer.from([0x81, 0x05]), Buffer.from('hello')])
const BIG = 4 * 1024 * 1024

const H2C = 'GET /ws/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n'
const POST_UPGRADE = 'POST /ws/p HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello'
const NO_KEY = 'GET /ws/nokey HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n'

function get (path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: a\r\n${extra}\r\n`
}

/**
 * The upstream, an HTTP server with a `ws` echo server on it, recording every request it
 * served (method, path, body, and whether it still carried `Upgrade`) and every upgrade. `/slow`
 * answers when the test releases it; `/big` streams 4 MB.
 */
async function recordingUpstream (t: Teardown): Promise<{
  url: string
  seen: string[]
  upgrades: string[]
  sockets: Set<Socket>
  tunnels: Set<Socket>
  slowArrived: () => Promise<void>
  release: () => void
}> {
  const seen: string[] = []
  const upgrades: string[] = []
  const sockets = new Set<Socket>()
  const tunnels = new Set<Socket>()
  const slow: Array<() => void> = []
  const slowWaiters: Array<() => void> = []
  const server = http.createServer((req, res) => {
    let body = ''
    req.setEncoding('latin1')
    req.on('data', (chunk: string) => { body += chunk })
    req.on('end', () => {
      seen.push(`${req.method ?? ''} ${req.url ?? ''}${body === '' ? '' : ` body=${body}`}${req.headers.upgrade === undefined ? '' : ' upgrade'}`)
      if (req.url === '/big') return streamBig(res)
      const answer = (): void => { res.end(`answer ${req.method ?? ''} ${req.url ?? ''}`) }
      if (req.url !== '/slow') return answer()
      slow.push(answer)
      slowWaiters.shift()?.()
    })
  })
  server.on('connection', socket => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  server.prependListener('upgrade', (req: http.IncomingMessage, socket: Socket) => {
    upgrades.push(req.url ?? '')
    tunnels.add(socket)
    socket.once('close', () => tunnels.delete(socket))
  })
  const wss = new WebSocketServer({ server })
  wss.on('connection', ws => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    wss.close()
    server.close()
  })
  return {
    url: `http://127.0.0.1:${portOf(server)}`,
    seen,
    upgrades,
    sockets,
    tunnels,
    slowArrived: async () => { if (slow.length === 0) await new Promise<void>(resolve => slowWaiters.push(resolve)) },
    release: () => { for (const answer of slow.splice(0)) answer() }
  }
}

function streamBig (res: http.ServerResponse): void {
  const chunk = Buffer.alloc(64 * 1024, 'b')
  let sent = 0
  const more = (): void => {
    while (sent < BIG) {
      sent += chunk.length
      if (!res.write(chunk)) {
        res.once('drain', more)
        return
      }
    }
    res.end()
  }
  more()
}

interface Answer { status: number, head: string, body: string }

/**
 * Splits a client's bytes into HTTP responses (Content-Length, chunked, or no body for HEAD
 * and 101); `rest` is whatever follows the last complete one (frames, after a 101).
 */
function splitAnswers (bytes: Buffer, methods: string[]): { answers: Answer[], rest: Buffer } {
  const answers: Answer[] = []
  let at = 0
  while (answers.length < methods.length) {
    const end = bytes.indexOf('\r\n\r\n', at)
    if (end === -1) break
    const head = bytes.subarray(at, end + 4).toString('latin1')
    const status = Number(head.split(' ')[1])
    let bodyEnd = end + 4
    const length = /\r\ncontent-length: *(\d+)/i.exec(head)
    if (methods[answers.length] === 'HEAD' || status === 101 || status === 204 || status === 304) {
      // no body
    } else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      const chunked = dechunk(bytes, bodyEnd)
      if (chunked === null) break
      answers.push({ status, head, body: chunked.body })
      at = chunked.end
      continue
    } else if (length !== null) {
      bodyEnd += Number(length[1])
      if (bytes.length < bodyEnd) break
    }
    answers.push({ status, head, body: bytes.subarray(end + 4, bodyEnd).toString('latin1') })
    at = bodyEnd
  }
  return { answers, rest: bytes.subarray(at) }
}

function dechunk (bytes: Buffer, start: number): { body: string, end: number } | null {
  let at = start
  let body = ''
  for (;;) {
    const line = bytes.indexOf('\r\n', at)
    if (line === -1) return null
    const size = parseInt(bytes.subarray(at, line).toString('latin1'), 16)
    if (bytes.length < line + 2 + size + 2) return null
    if (size === 0) return { body, end: line + 4 }
    body += bytes.subarray(line + 2, line + 2 + size).toString('latin1')
    at = line + 2 + size + 2
  }
}

type Client = Awaited<ReturnType<typeof rawClient>>

/** Waits until `methods.length` answers and `restBytes` more bytes arrived (rejects if the server closes first). */
async function answersFor (client: Client, methods: string[], restBytes = 0): Promise<{ answers: Answer[], rest: Buffer }> {
  for (;;) {
    const split = splitAnswers(client.received(), methods)
    if (split.answers.length === methods.length && split.rest.length >= restBytes) return split
    if (client.socket.destroyed || client.socket.readableEnded) throw new Error(`closed after ${split.answers.length} answers`)
    await new Promise<void>(resolve => {
      const next = (): void => {
        client.socket.removeListener('data', next)
        client.socket.removeListener('end', next)
        client.socket.removeListener('close', next)
        resolve()
      }
      client.socket.on('data', next)
      client.socket.on('end', next)
      client.socket.on('close', next)
    })
  }
}

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

async function setup (t: Teardown, before?: (app: FastifyInstance) => void, fastify?: FastifyServerOptions): Promise<{ up: Awaited<ReturnType<typeof recordingUpstream>>, port: number, accepted: Socket[], idle: () => Promise<void>, alive: () => Promise<void> }> {
  const up = await recordingUpstream(t)
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
      await client.closed
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
    const { up, port, idle, alive } = await setup(t)
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
    client.socket.write(get('/ws/d', 'Connection: close\r\n'))
    await client.closed
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
  await client.closed
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
  await client.closed
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
  await client.closed
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
