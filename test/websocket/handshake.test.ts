// WebSocket pass-through, the handshake: what goes upstream, what comes back, and every
// answer that is not a tunnel.
import { once } from 'node:events'

import https from 'node:https'
import { WebSocketServer } from 'ws'
import t from 'tap'
import { createHash } from 'node:crypto'
import deadline from '../../plugins/deadline/index.js'
import {
  ACCEPT_FOR_SAMPLE_KEY, gone, openClient, parseReply, portOf, proxyApp, rawClient, rawUpstream, upgradeRequest, wsUpstream, type RawUpstream
} from '../helpers/ws-servers.js'
import { selfSignedCertificate } from '../helpers/tls.js'
import { peerLeft, PROMPTLY, until, within } from '../helpers/bounded.js'

/** A `ws` client through the proxy, open; bounded. */
async function openedAt (...args: Parameters<typeof openClient>): ReturnType<typeof openClient> {
  return await within(PROMPTLY, openClient(...args), `a WebSocket opened at ${args[0]}`)
}

/** The next connection to the raw upstream; bounded. */
async function upstreamConnection (up: RawUpstream): ReturnType<RawUpstream['next']> {
  return await within(PROMPTLY, up.next(), 'the upstream got a connection')
}

/** The proxy closed (or ended) the client's connection; bounded. */
async function answered (client: { closed: Promise<void> }): Promise<void> {
  await within(PROMPTLY, client.closed, 'the proxy answered and closed the client connection')
}

function acceptFor (key: string): string {
  return createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
}

t.test('every end-to-end header goes upstream; the upstream picks the subprotocol', async (t) => {
  const up = await wsUpstream(t, { handleProtocols: (protocols) => protocols.has('a') ? 'a' : false })
  const { url, port } = await proxyApp(t, { upstream: up.url })
  const ws = await openedAt(`${url}/chat?room=1`, ['b', 'a'], {
    headers: { Origin: 'https://app.example', Cookie: 'sid=42', Authorization: 'Bearer token' }
  })
  t.teardown(() => ws.terminate())
  t.equal(ws.protocol, 'a', 'the client was told the upstream\'s choice, not its first offer')
  ws.send('hello')
  const [message] = await within(PROMPTLY, once(ws, 'message'), 'ws: message')
  t.equal(String(message), 'hello', 'echoed through the tunnel')
  t.equal(up.handshakes.length, 1)
  const seen = up.handshakes[0]
  t.equal(seen.url, '/chat?room=1', 'path and query reach the upstream')
  t.match(seen.headers, {
    origin: 'https://app.example',
    cookie: 'sid=42',
    authorization: 'Bearer token',
    'sec-websocket-protocol': 'b,a', // as the ws client writes it
    'sec-websocket-version': '13',
    'x-forwarded-for': '127.0.0.1',
    'x-forwarded-proto': 'http',
    'x-forwarded-host': `127.0.0.1:${port}`,
    host: `127.0.0.1:${up.port}`
  })
  t.ok(seen.headers['sec-websocket-key'], 'the client\'s key is forwarded (ws checked the accept)')
})

t.test('wsUpstream may be a function returning a ws: URL, chosen per request', async (t) => {
  const a = await wsUpstream(t)
  const b = await wsUpstream(t)
  const { url } = await proxyApp(t, {
    upstream: 'http://127.0.0.1:9',
    wsUpstream: (request) => `ws://127.0.0.1:${request.headers['x-shard'] === 'b' ? b.port : a.port}/base`
  })
  const toB = await openedAt(`${url}/room`, undefined, { headers: { 'X-Shard': 'b' } })
  const toA = await openedAt(`${url}/room`)
  t.teardown(() => { toA.terminate(); toB.terminate() })
  t.same([a.handshakes.length, b.handshakes.length], [1, 1], 'one handshake each')
  t.equal(b.handshakes[0].url, '/base/room', 'under the upstream URL\'s own path')
  t.equal(b.handshakes[0].headers['x-shard'], 'b')
})

t.test('an exception from a wsUpstream function goes to the app\'s error handler, as for plain HTTP', async (t) => {
  const { port } = await proxyApp(t, {
    upstream: 'http://127.0.0.1:9',
    wsUpstream: () => { throw Object.assign(new Error('no shard'), { statusCode: 421 }) },
    before: (app) => {
      app.setErrorHandler(async (err: Error, _request, reply) => await reply.code(421).send({ handled: err.message }))
    }
  })
  const client = await rawClient(t, port)
  client.socket.write(upgradeRequest('/ws/x'))
  await answered(client)
  const reply = parseReply(client.received())
  t.equal(reply.status, 421)
  t.same(JSON.parse(reply.body), { handled: 'no shard' })
  t.match(reply.head, /\r\nconnection: close\r\n/i)
})

t.test('permessage-deflate is agreed end to end and the bytes stay compressed', async (t) => {
  const up = await wsUpstream(t, { perMessageDeflate: true })
  const { url } = await proxyApp(t, { upstream: up.url })
  const ws = await openedAt(`${url}/deflate`, undefined, { perMessageDeflate: true })
  t.teardown(() => ws.terminate())
  t.match(ws.extensions, /permessage-deflate/, 'the client has the extension')
  t.match(up.handshakes[0].headers['sec-websocket-extensions'], /permessage-deflate/, 'the offer reached the upstream')
  const big = 'streamline '.repeat(20_000)
  ws.send(big)
  const [echo] = await within(PROMPTLY, once(ws, 'message'), 'ws: message')
  t.equal(String(echo), big, 'the 220 KB message came back whole')
  const upstreamBytesRead = [...up.sockets].reduce((sum, s) => sum + s.bytesRead, 0)
  t.ok(upstreamBytesRead < 20_000, `the upstream read ${upstreamBytesRead} bytes for 220 KB: compressed by the client, untouched by the proxy`)
})

t.test('the 101 is relayed as sent, frames pass byte for byte both ways, early client bytes wait', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}` })
  const client = await rawClient(t, port)
  const early = Buffer.from([0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e]) // masked text 'hello'
  client.socket.write(Buffer.concat([Buffer.from(upgradeRequest('/ws/raw', ['Sec-WebSocket-Protocol: b, a'])), early]))
  const conn = await upstreamConnection(up)
  const head = await within(PROMPTLY, conn.head, 'the upstream got the handshake')
  t.match(head, /^GET \/raw HTTP\/1.1\r\n/)
  t.match(head, /\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n/i)
  // Absence can only be shown by waiting: give a wrongly forwarded early frame 150 ms to show up.
  await new Promise(resolve => setTimeout(resolve, 150))
  t.equal(conn.received().toString('latin1'), head, 'the upstream saw nothing after the handshake before it answered')
  const answer = 'HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${ACCEPT_FOR_SAMPLE_KEY}\r\nsec-websocket-protocol: a\r\nX-Odd-Case: Kept\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n`
  // Close frames with codes 1004, 1005 (no code) and 1006, and 4001 with a reason: reserved
  // codes a terminating proxy rewrites; here they are just bytes.
  const frames = Buffer.concat([
    Buffer.from([0x88, 0x02, 0x03, 0xec]),
    Buffer.from([0x88, 0x00]),
    Buffer.from([0x88, 0x02, 0x03, 0xee]),
    Buffer.from([0x88, 0x05, 0x0f, 0xa1]), Buffer.from('bye')
  ])
  conn.socket.write(answer)
  conn.socket.write(frames)
  const got = await within(PROMPTLY, client.nextData(answer.length + frames.length), 'the proxy\'s answer reached the client')
  t.equal(got.subarray(0, answer.length).toString('latin1'), answer, '101 head byte for byte')
  t.same(got.subarray(answer.length), frames, 'close codes 1004-1006 and 4001 with reason unchanged')
  await until(PROMPTLY, () => conn.received().length === head.length + early.length, 'the client\'s early frames reached the upstream')
  t.same(conn.received().subarray(head.length), early, 'the early frame arrived after the 101')
  t.equal(acceptFor('dGhlIHNhbXBsZSBub25jZQ=='), ACCEPT_FOR_SAMPLE_KEY)
})

t.test('close codes and reasons pass unchanged between ws endpoints', async (t) => {
  const up = await wsUpstream(t)
  const { url } = await proxyApp(t, { upstream: up.url })
  const connected = once(up.wss, 'connection')
  const fromClient = await openedAt(`${url}/a`)
  const [serverSide] = await within(PROMPTLY, connected, 'the upstream got the WebSocket')
  fromClient.close(4002, 'client says bye')
  const [code, reason] = await within(PROMPTLY, once(serverSide, 'close'), 'serverSide: close')
  t.equal(code, 4002)
  t.equal(String(reason), 'client says bye')
  const connected2 = once(up.wss, 'connection')
  const toClient = await openedAt(`${url}/b`)
  const [serverSide2] = await within(PROMPTLY, connected2, 'the upstream got the second WebSocket')
  serverSide2.close(4999, 'upstream says bye')
  const [code2, reason2] = await within(PROMPTLY, once(toClient, 'close'), 'toClient: close')
  t.equal(code2, 4999)
  t.equal(String(reason2), 'upstream says bye')
})

t.test('an upstream that refuses the upgrade is answered as HTTP, the early bytes dropped, no tunnel', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}` })
  const answers = [
    'HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\nX-Reason: origin\r\n\r\nno way',
    'HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nnot here.\r\n0\r\n\r\n',
    'HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n',
    'HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: Upgrade, Keep-Alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok'
  ]
  const expected = [
    { status: 403, body: 'no way', header: /\r\nX-Reason: origin\r\n/i },
    { status: 404, body: /not here\./, header: /\r\nContent-Type: text\/plain\r\n/i },
    { status: 426, body: '', header: /\r\nSec-WebSocket-Version: 13\r\n/i },
    { status: 200, body: 'ok', header: /\r\nContent-Length: 2\r\n/i }
  ]
  for (let i = 0; i < answers.length; i++) {
    const client = await rawClient(t, port)
    client.socket.write(upgradeRequest('/ws/refused') + 'EARLY')
    const conn = await upstreamConnection(up)
    await within(PROMPTLY, conn.head, 'the upstream got the handshake')
    conn.socket.end(answers[i])
    await answered(client)
    const reply = parseReply(client.received())
    t.equal(reply.status, expected[i].status, `status ${expected[i].status} relayed`)
    t.match(reply.head, expected[i].header, 'end-to-end headers relayed')
    t.match(reply.head, /\r\nConnection: close\r\n/i, 'and the connection closes')
    t.notMatch(reply.head, /\r\n(upgrade|keep-alive):/i, 'hop-by-hop headers removed')
    t.match(reply.body, expected[i].body)
    t.notMatch(conn.received().toString('latin1'), /EARLY/, 'the early bytes never reached the upstream')
  }
})

t.test('a client that leaves during a relayed refusal frees the upstream connection', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}` })
  const client = await rawClient(t, port)
  client.socket.write(upgradeRequest('/ws/refused'))
  const conn = await upstreamConnection(up)
  await within(PROMPTLY, conn.head, 'the upstream got the handshake')
  conn.socket.write('HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n')
  await within(PROMPTLY, client.nextData(1), 'the proxy\'s answer reached the client')
  await new Promise(resolve => setImmediate(resolve))
  const started = Date.now()
  client.socket.resetAndDestroy()
  await peerLeft(conn.socket, 'the upstream connection closed after the client left')
  t.ok(Date.now() - started < 1000, `the upstream connection closed ${Date.now() - started} ms after the client left`)
})

t.test('a 101 for another protocol, or without Upgrade, is a 502', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}` })
  for (const answer of [
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n',
    'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n'
  ]) {
    const client = await rawClient(t, port)
    client.socket.write(upgradeRequest('/ws/bad'))
    const conn = await upstreamConnection(up)
    const head = await within(PROMPTLY, conn.head, 'the upstream got the handshake')
    conn.socket.write(answer)
    await answered(client)
    const reply = parseReply(client.received())
    t.equal(reply.status, 502)
    t.same(JSON.parse(reply.body), {
      statusCode: 502,
      code: 'FST_STREAMLINE_UPSTREAM_BAD_RESPONSE',
      error: 'Bad Gateway',
      message: 'The upstream service sent an invalid response'
    })
    t.match(await peerLeft(conn.socket, 'the upstream connection was closed'), /^(end|close)$/, 'the upstream connection was closed')
    t.equal(conn.received().toString('latin1'), head, 'the upstream got the handshake and nothing after it')
  }
})

t.test('an upstream port that is closed gives a 502 on the client socket', async (t) => {
  const up = await rawUpstream(t)
  const deadPort = up.port
  await new Promise(resolve => up.server.close(resolve))
  const { port } = await proxyApp(t, { upstream: 'http://127.0.0.1:9', wsUpstream: `ws://127.0.0.1:${deadPort}` })
  const client = await rawClient(t, port)
  client.socket.write(upgradeRequest('/ws/x'))
  await answered(client)
  const reply = parseReply(client.received())
  t.equal(reply.status, 502)
  t.equal(JSON.parse(reply.body).code, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE')
  t.notMatch(reply.body, String(deadPort), 'no upstream address in the body')
})

/** Upgrade requests the proxy will not tunnel; `body` is what the upstream must receive as plain HTTP. */
const NOT_TUNNELLED = [
  { raw: 'POST /ws/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello', line: 'POST /x HTTP/1.1', body: 'hello' },
  { raw: 'GET /ws/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n', line: 'GET /x HTTP/1.1', body: '' },
  { raw: 'GET /ws/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: totally-unknown\r\n\r\n', line: 'GET /x HTTP/1.1', body: '' },
  { raw: 'GET /ws/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 4\r\n\r\nbody', line: 'GET /x HTTP/1.1', body: '' }, // the plain proxy drops GET bodies
  { raw: 'GET /ws/x HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', line: 'GET /x HTTP/1.1', body: '' }
]

t.test('upgrades that cannot be tunnelled are proxied as plain HTTP without Upgrade, never a tunnel', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}` })
  for (const { raw, line, body } of NOT_TUNNELLED) {
    const name = raw.split('\r\n')[0] + ' / ' + raw.split('\r\n')[3]
    const client = await rawClient(t, port)
    client.socket.write(raw)
    const conn = await upstreamConnection(up)
    const head = await within(PROMPTLY, conn.head, 'the upstream got the handshake')
    t.ok(head.startsWith(line + '\r\n'), `${name}: reached the upstream as ${line}`)
    t.notMatch(head, /\r\n(upgrade|http2-settings):/i, 'without Upgrade or the headers Connection listed')
    await until(PROMPTLY, () => conn.received().length >= head.length + body.length, `${name}: the request body reached the upstream`)
    t.equal(conn.received().subarray(head.length).toString(), body, 'with its body, if any')
    conn.socket.end('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nplain')
    await until(PROMPTLY, () => client.received().includes('plain'), `${name}: the upstream's plain answer reached the client`)
    const reply = parseReply(client.received())
    t.equal(reply.status, 200, 'the client got the upstream\'s plain answer')
    t.notMatch(reply.head, /\r\nupgrade:/i)
  }
})

t.test('path tricks get the same answer over an upgrade as over plain HTTP', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}` })
  for (const path of ['/ws/../admin', '/ws/%2e%2e/admin', '/ws/.%2E/admin', '/ws/a\\..\\admin', '/ws/%2fadmin', '/ws//evil.example/x']) {
    const plain = await rawClient(t, port)
    plain.socket.write(`GET ${path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n`)
    await answered(plain)
    const upgrade = await rawClient(t, port)
    upgrade.socket.write(upgradeRequest(path))
    await answered(upgrade)
    const plainReply = parseReply(plain.received())
    const upgradeReply = parseReply(upgrade.received())
    t.ok(plainReply.status >= 400 && plainReply.status < 500, `${path}: plain HTTP refused with ${plainReply.status}`)
    t.equal(upgradeReply.status, plainReply.status, `${path}: same status over an upgrade`)
    t.same(JSON.parse(upgradeReply.body), JSON.parse(plainReply.body), `${path}: same body`)
  }
  t.equal(up.connections.length, 0, 'the upstream was never contacted')
})

t.test('an auth hook that answers 401 stops the upgrade before any upstream contact', async (t) => {
  const up = await wsUpstream(t)
  const { url } = await proxyApp(t, {
    upstream: up.url,
    before: (app) => {
      app.addHook('preHandler', async (request, reply) => {
        if (request.headers.authorization !== 'Bearer ok') await reply.code(401).send({ error: 'no' })
      })
    }
  })
  await t.rejects(openClient(`${url}/secure`), /unexpected response 401/)
  t.equal(up.handshakes.length, 0, 'the upstream never saw a handshake')
  t.equal(up.sockets.size, 0, 'nor a connection')
  const ws = await openedAt(`${url}/secure`, undefined, { headers: { Authorization: 'Bearer ok' } })
  t.teardown(() => ws.terminate())
  t.equal(up.handshakes.length, 1, 'with credentials it goes through')
})

t.test('a client that leaves while a slow auth hook runs never reaches the upstream', async (t) => {
  const up = await rawUpstream(t)
  let entered = deferred()
  let finished = deferred()
  const { port } = await proxyApp(t, {
    upstream: `http://127.0.0.1:${up.port}`,
    // An auth check that takes until the client has gone.
    preHandler: async (request) => {
      entered.resolve()
      await gone(request.raw.socket as import('node:net').Socket)
      setImmediate(finished.resolve)
    }
  })
  for (const leave of ['reset', 'end'] as const) {
    entered = deferred()
    finished = deferred()
    const client = await rawClient(t, port)
    client.socket.write(upgradeRequest('/ws/slow-auth'))
    await within(PROMPTLY, entered.promise, 'the auth hook ran')
    if (leave === 'reset') client.socket.resetAndDestroy()
    else client.socket.end()
    await within(PROMPTLY, finished.promise, 'the auth hook saw the client leave')
  }
  // The upstream would be contacted synchronously after the hook; give it a moment to show up.
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(up.connections.length, 0, 'no handshake was started for a client that is gone')
})

function deferred (): { promise: Promise<void>, resolve: () => void } {
  let resolve: () => void = () => {}
  const promise = new Promise<void>(_resolve => { resolve = _resolve })
  return { promise, resolve }
}

t.test('the deadline covers the handshake: a silent upstream gives a 504, then the tunnel is free of it', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, {
    upstream: `http://127.0.0.1:${up.port}`,
    before: async (app) => { await app.register(deadline, { timeout: 300 }) }
  })
  const client = await rawClient(t, port)
  const started = Date.now()
  client.socket.write(upgradeRequest('/ws/slow'))
  const conn = await upstreamConnection(up)
  await answered(client)
  const elapsed = Date.now() - started
  const reply = parseReply(client.received())
  t.equal(reply.status, 504)
  t.equal(JSON.parse(reply.body).code, 'FST_STREAMLINE_DEADLINE_EXCEEDED')
  t.match(reply.head, /\r\nconnection: close\r\n/i, 'the deadline plugin\'s 504 on the hijacked reply closes the connection')
  // 300 ms deadline; generous upper margin for a loaded 2-core machine.
  t.ok(elapsed >= 280 && elapsed < 2000, `504 after ${elapsed} ms`)
  const head = await within(PROMPTLY, conn.head, 'the upstream got the handshake')
  t.match(await peerLeft(conn.socket, 'the upstream handshake was abandoned'), /^(end|close)$/, 'the upstream handshake was abandoned')
  t.equal(conn.received().toString('latin1'), head, 'the upstream got the handshake and nothing after it')

  const ws = await wsUpstream(t)
  const second = await proxyApp(t, { upstream: ws.url, before: async (app) => { await app.register(deadline, { timeout: 300 }) } })
  const client2 = await openedAt(`${second.url}/long`)
  t.teardown(() => client2.terminate())
  // Outlive the 300 ms deadline by a wide margin: a tunnel still bound to it would be cut.
  await new Promise(resolve => setTimeout(resolve, 700))
  client2.send('still here')
  const [message] = await within(PROMPTLY, once(client2, 'message'), 'client2: message')
  t.equal(String(message), 'still here')
})

t.test('without a deadline, wsHandshakeTimeout bounds the handshake', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}`, wsHandshakeTimeout: 300 })
  const client = await rawClient(t, port)
  client.socket.write(upgradeRequest('/ws/slow'))
  const conn = await upstreamConnection(up)
  await answered(client)
  const reply = parseReply(client.received())
  t.equal(reply.status, 504)
  t.equal(JSON.parse(reply.body).code, 'FST_STREAMLINE_UPSTREAM_TIMEOUT')
  const head = await within(PROMPTLY, conn.head, 'the upstream got the handshake')
  t.match(await peerLeft(conn.socket, 'the upstream handshake was abandoned'), /^(end|close)$/, 'the upstream handshake was abandoned')
  t.equal(conn.received().toString('latin1'), head, 'the upstream got the handshake and nothing after it')
})

t.test('a wss: upstream: its certificate is verified by default, and trusted with tls.ca', async (t) => {
  const { key, cert } = selfSignedCertificate(t)
  const server = https.createServer({ key, cert })
  const wss = new WebSocketServer({ server })
  wss.on('connection', ws => ws.on('message', data => ws.send(`tls: ${String(data)}`)))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { wss.close(); server.closeAllConnections(); server.close() })
  const wsUrl = `wss://127.0.0.1:${portOf(server)}`

  const strict = await proxyApp(t, { upstream: 'http://127.0.0.1:9', wsUpstream: wsUrl })
  const client = await rawClient(t, strict.port)
  client.socket.write(upgradeRequest('/ws/secure'))
  await answered(client)
  const reply = parseReply(client.received())
  t.equal(reply.status, 502, 'a self-signed certificate is refused by default')
  t.equal(JSON.parse(reply.body).code, 'FST_STREAMLINE_UPSTREAM_TLS')

  const trusting = await proxyApp(t, { upstream: 'http://127.0.0.1:9', wsUpstream: wsUrl, tls: { ca: cert } })
  const ws = await openedAt(`${trusting.url}/secure`)
  t.teardown(() => ws.terminate())
  ws.send('hello')
  const [message] = await within(PROMPTLY, once(ws, 'message'), 'ws: message')
  t.equal(String(message), 'tls: hello', 'with the CA given, the tunnel runs over TLS')
})

t.test('wrong WebSocket options fail at registration with a clear message', async (t) => {
  const Fastify = (await import('fastify')).default
  const proxy = (await import('../../plugins/proxy/index.js')).default
  for (const [options, message] of [
    [{ wsIdleTimeout: -1 }, /wsIdleTimeout: expected milliseconds/],
    [{ wsCloseGrace: 'soon' }, /wsCloseGrace: expected milliseconds/],
    [{ wsUpstream: 'ftp://x' }, /wsUpstream/],
    [{ websocket: 'yes' }, /websocket: expected a boolean/]
  ] as const) {
    const app = Fastify()
    t.teardown(async () => await app.close())
    await t.rejects(async () => { await app.register(proxy, { upstream: 'http://127.0.0.1:9', ...options } as never) }, { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION', message })
  }
})

t.test('without websocket: true an upgrade is plain HTTP with Upgrade removed, never a tunnel', async (t) => {
  const up = await wsUpstream(t)
  const seen: string[] = []
  up.server.prependListener('request', (req) => { seen.push(String(req.headers.upgrade)) })
  const { port } = await proxyApp(t, { upstream: up.url, websocket: false })
  const client = await rawClient(t, port)
  client.socket.write(upgradeRequest('/ws/x'))
  await until(PROMPTLY, () => client.received().includes('upgrade required'), 'the upstream\'s plain answer reached the client')
  const reply = parseReply(client.received())
  t.equal(reply.status, 426, 'the upstream answered a plain GET')
  t.same(seen, ['undefined'], 'it arrived without Upgrade')
  t.equal(up.handshakes.length, 0, 'no WebSocket handshake reached the upstream')
})
