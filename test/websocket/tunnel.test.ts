// WebSocket pass-through, the open tunnel: half-close, abrupt ends, backpressure, timers,
// shutdown and the tunnel's own log line.
import { once } from 'node:events'
import http from 'node:http'
import { Writable } from 'node:stream'
import type { Socket } from 'node:net'
import t from 'tap'
import { openClient, proxyApp, rawClient, rawTunnel, rawUpstream, SWITCH, wsUpstream } from '../helpers/ws-servers.js'
import { peerLeft, PROMPTLY, until, within } from '../helpers/bounded.js'

/** A tunnel through the proxy to the raw upstream, bounded. */
async function tunnel (t: Parameters<typeof rawTunnel>[0], port: number, up: Parameters<typeof rawTunnel>[2]): ReturnType<typeof rawTunnel> {
  return await within(PROMPTLY, rawTunnel(t, port, up), 'a tunnel opened through the proxy (the 101 reached the client)')
}

/** A `ws` client through the proxy, open, bounded. */
async function openedAt (url: string): ReturnType<typeof openClient> {
  return await within(PROMPTLY, openClient(url), `a WebSocket opened at ${url}`)
}

t.test('a half-close passes on in both directions and data still flows the other way', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}` })
  const { client, upstream, fromClient: upstreamBytes } = await tunnel(t, port, up)
  client.socket.end('last words')
  await within(PROMPTLY, once(upstream, 'end'), 'the client\'s FIN reached the upstream')
  t.equal(upstreamBytes().toString(), 'last words', 'the upstream got the bytes, then the FIN')
  upstream.write('reply after your FIN')
  await within(PROMPTLY, client.nextData(SWITCH.length + 20), 'the upstream\'s reply reached the half-closed client')
  t.equal(client.received().subarray(SWITCH.length).toString(), 'reply after your FIN', 'the other direction stays open')
  upstream.end()
  await within(PROMPTLY, once(client.socket, 'end'), 'the upstream\'s FIN reached the client')
  t.ok(client.socket.readableEnded, 'the upstream\'s FIN reached the client')
  t.equal(client.received().length, SWITCH.length + 20, 'after the reply, nothing more')
})

t.test('an abrupt close on either side takes the other down within 1 s', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}` })
  const first = await tunnel(t, port, up)
  let started = Date.now()
  first.client.socket.resetAndDestroy()
  await peerLeft(first.upstream, 'the client\'s reset reached the upstream')
  // Spec: within 1 s; the margin is for a loaded machine, typically a few ms.
  t.ok(Date.now() - started < 1000, `client reset reached the upstream in ${Date.now() - started} ms`)
  const second = await tunnel(t, port, up)
  started = Date.now()
  second.upstream.resetAndDestroy()
  await within(PROMPTLY, second.client.closed, 'the upstream\'s reset reached the client')
  t.ok(Date.now() - started < 1000, `upstream reset reached the client in ${Date.now() - started} ms`)
})

// The bound for moving what filled the buffers (a few MiB at most) once the reader reads again.
const BULK = 20_000

/** Writes 1 MiB chunks until a write has waited 300 ms for 'drain'; returns the bytes the stream took. */
async function fillUntilStalled (socket: Socket, limit: number): Promise<{ accepted: number, stalled: boolean }> {
  const chunk = Buffer.alloc(1 << 20, 0x61)
  let accepted = 0
  while (accepted < limit) {
    accepted += chunk.length
    if (socket.write(chunk)) continue
    const drained = await Promise.race([
      once(socket, 'drain').then(() => true),
      new Promise<boolean>(resolve => setTimeout(resolve, 300, false))
    ])
    if (!drained) return { accepted, stalled: true }
  }
  return { accepted, stalled: false }
}

t.test('backpressure both ways: a reader that stops stalls the writer, then everything arrives', async (t) => {
  const up = await rawUpstream(t)
  const { port } = await proxyApp(t, { upstream: `http://127.0.0.1:${up.port}` })
  const { client, upstream, fromClient: upstreamBytes } = await tunnel(t, port, up)
  const limit = 256 << 20

  client.socket.pause()
  const down = await fillUntilStalled(upstream, limit)
  t.ok(down.stalled, `the upstream stalled after ${down.accepted >> 20} MiB while the client read nothing`)
  client.socket.resume()
  await within(BULK, client.nextData(SWITCH.length + down.accepted), `all ${down.accepted} bytes reached the client once it read`)
  t.equal(client.received().length - SWITCH.length, down.accepted, 'every byte reached the client once it read')

  upstream.pause()
  const upward = await fillUntilStalled(client.socket, limit)
  t.ok(upward.stalled, `the client stalled after ${upward.accepted >> 20} MiB while the upstream read nothing`)
  upstream.resume()
  await until(BULK, () => upstreamBytes().length >= upward.accepted, `all ${upward.accepted} bytes reached the upstream once it read`)
  t.equal(upstreamBytes().length, upward.accepted, 'every byte reached the upstream once it read')
})

t.test('wsIdleTimeout closes a silent tunnel; traffic either way keeps it open', async (t) => {
  const up = await wsUpstream(t)
  // A timeout well above the gaps between messages, which a loaded machine can stretch.
  const { url } = await proxyApp(t, { upstream: up.url, wsIdleTimeout: 1000 })
  const ws = await openedAt(`${url}/idle`)
  const opened = Date.now()
  const closed = once(ws, 'close')
  // Traffic every 100 ms for 2 s: twice the idle timeout without closing.
  let quietSince = 0
  for (let i = 0; i < 20; i++) {
    await new Promise(resolve => setTimeout(resolve, 100))
    ws.send(`ping ${i}`)
    // A tunnel closed early fails here rather than leaving the test waiting for an echo.
    const echoed = await Promise.race([once(ws, 'message').then(() => true), closed.then(() => false)])
    if (!echoed) {
      t.fail(`closed during traffic, after ${Date.now() - opened} ms`)
      break
    }
    quietSince = Date.now()
  }
  t.equal(ws.readyState, ws.OPEN, `still open after ${Date.now() - opened} ms of traffic`)
  const [code] = await within(5000, closed, 'wsIdleTimeout closed the silent tunnel')
  const quiet = Date.now() - quietSince
  t.equal(code, 1001, 'a 1001 close frame at a frame boundary, as on a shutdown')
  t.ok(quiet >= 900 && quiet < 5000, `closed after ${quiet} ms of silence (timeout 1000 ms)`)
  await until(PROMPTLY, () => up.sockets.size === 0, 'the upstream connection closed with the tunnel')
  t.equal(up.sockets.size, 0, 'the upstream connection is gone too')
})

t.test('wsMaxStreamDuration closes a busy tunnel', async (t) => {
  const up = await wsUpstream(t)
  const { url } = await proxyApp(t, { upstream: up.url, wsMaxStreamDuration: 400 })
  const ws = await openedAt(`${url}/lifetime`)
  const opened = Date.now()
  const timer = setInterval(() => ws.send('busy'), 50)
  t.teardown(() => clearInterval(timer))
  await within(PROMPTLY, once(ws, 'close'), 'wsMaxStreamDuration closed the busy tunnel')
  const lived = Date.now() - opened
  t.ok(lived >= 350 && lived < 2000, `closed after ${lived} ms (limit 400 ms)`)
})

t.test('app.close() closes open tunnels and returns (details in drain/websocket)', async (t) => {
  const up = await wsUpstream(t)
  const { app, url } = await proxyApp(t, { upstream: up.url, wsCloseGrace: 300 })
  const clients = await Promise.all([1, 2, 3].map(async i => await openedAt(`${url}/open${i}`)))
  const closes = clients.map(async ws => await once(ws, 'close'))
  const started = Date.now()
  await within(PROMPTLY, app.close(), 'app.close() returned')
  const took = Date.now() - started
  t.ok(took < 3000, `close() returned after ${took} ms (grace 300 ms)`)
  const codes = (await within(PROMPTLY, Promise.all(closes), 'every client\'s tunnel closed')).map(([code]) => code as number)
  t.same(codes, [1001, 1001, 1001], 'each client got 1001 Going Away')
  await until(PROMPTLY, () => up.sockets.size === 0, 'the upstream connections closed with the tunnels')
  t.equal(up.sockets.size, 0, 'clients and upstream connections are closed')

  const up2 = await wsUpstream(t)
  const second = await proxyApp(t, { upstream: up2.url, wsCloseGrace: 5000 })
  const ws = await openedAt(`${second.url}/polite`)
  const started2 = Date.now()
  const closing = second.app.close()
  setTimeout(() => ws.close(1001, 'going away'), 100)
  await within(PROMPTLY, closing, 'app.close() returned once the tunnel ended itself')
  const took2 = Date.now() - started2
  t.ok(took2 < 2500, `a tunnel that ends itself within the grace lets close() return early (${took2} ms)`)
})

t.test('every tunnel writes its own log line (hijacked replies skip onResponse)', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line !== '') lines.push(JSON.parse(line))
      done()
    }
  })
  const up = await wsUpstream(t)
  const { url } = await proxyApp(t, { upstream: up.url, fastify: { logger: { level: 'info', stream } } })
  const ws = await openedAt(`${url}/logged`)
  ws.send('12345')
  await within(PROMPTLY, once(ws, 'message'), 'the echo')
  ws.close(1000)
  await until(PROMPTLY, () => lines.some(l => l.msg === 'websocket tunnel closed'), 'the "websocket tunnel closed" log line')
  const line = lines.find(l => l.msg === 'websocket tunnel closed') as Record<string, unknown>
  t.match(line, { res: { statusCode: 101 }, closedBy: String, reqId: String })
  t.ok(Number(line.bytesIn) > 5 && Number(line.bytesOut) > 5, `bytes counted (${String(line.bytesIn)} in, ${String(line.bytesOut)} out)`)
  t.equal(typeof line.durationMs, 'number')
})

t.test('the HTTP server\'s own timeouts do not cut an open tunnel', async (t) => {
  const up = await wsUpstream(t)
  const { url } = await proxyApp(t, {
    upstream: up.url,
    fastify: {
      connectionTimeout: 300,
      keepAliveTimeout: 300,
      // Node checks requestTimeout/headersTimeout every connectionsCheckingInterval (30 s by default).
      serverFactory: (handler) => http.createServer({ requestTimeout: 300, headersTimeout: 300, connectionsCheckingInterval: 100 }, handler)
    }
  })
  const ws = await openedAt(`${url}/long`)
  t.teardown(() => ws.terminate())
  // The timeouts are live: a request whose head never completes is cut meanwhile.
  const slow = await rawClient(t, Number(new URL(url).port))
  slow.socket.write('GET /ws/x HTTP/1.1\r\nHost: a\r\n')
  await within(PROMPTLY, slow.closed, 'the server cut the slow request head')
  t.match(slow.received().toString('latin1'), /^HTTP\/1\.1 408 /, 'a slow request head got a 408')
  // Well past the timeouts, through several checks.
  await new Promise(resolve => setTimeout(resolve, 800))
  ws.send('still open')
  const [message] = await within(PROMPTLY, once(ws, 'message'), 'the echo, well past the server\'s timeouts')
  t.equal(String(message), 'still open')
})
