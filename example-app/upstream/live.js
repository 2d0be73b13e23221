// The "live" demo service: an SSE price ticker and a WebSocket chat. It knows nothing about
// the ingress; it is what a real backend behind it would look like.
import Fastify from 'fastify'
import { WebSocketServer } from 'ws'

// The subprotocols this service speaks, in ITS order of preference. A client offering
// "echo.v1, chat.v2" gets chat.v2: the upstream chooses, and the ingress must relay that choice.
export const SUBPROTOCOLS = ['chat.v2', 'echo.v1']

/**
 * `name` (e.g. live-2) is the replica's own name: it answers every request with `x-replica` set
 * to it, so the page can show which replica served. A name, never an address: the client learns
 * nothing about where the replicas run.
 */
export async function startLive ({ host, port, tickMs, log, name = 'live' }) {
  const app = Fastify()
  const tickers = new Set()
  const wss = new WebSocketServer({ server: app.server, path: '/chat', handleProtocols: pickProtocol, maxPayload: 64 * 1024 })

  app.addHook('onSend', async (request, reply) => { reply.header('x-replica', name) })
  // What the page's replicas card asks, several times a second: a short answer naming the replica.
  app.get('/whoami', async () => ({ replica: name }))
  // The pool's active health check (ingress.js): 200 while the server is up.
  app.get('/healthz', async () => ({ ok: true }))
  app.get('/ticker', (request, reply) => streamTicker(request, reply, { tickMs, tickers, log, name }))
  wss.on('connection', (socket, request) => joinChat(wss, socket, request, log))

  // Open streams would keep close() waiting: end each one cleanly (SSE clients see a normal
  // end of stream), and say goodbye to WebSocket clients with 1001 "going away".
  app.addHook('preClose', async () => {
    for (const res of tickers) res.end()
    for (const socket of wss.clients) socket.close(1001, 'server shutting down')
  })
  app.addHook('onClose', async () => new Promise(resolve => wss.close(() => resolve())))

  await app.listen({ host, port })
  return { app, url: `http://${host}:${app.server.address().port}` }
}

function streamTicker (request, reply, { tickMs, tickers, log, name }) {
  reply.hijack()
  const res = reply.raw
  // EventSource sends Last-Event-ID when it reconnects: continue the sequence from there.
  let id = Number.parseInt(request.headers['last-event-id'] ?? '0', 10) || 0
  let price = 100
  // RFC 9110 Via, as a proxy in front adds it: the page shows the protocol that reached the ingress.
  const via = request.headers.via ?? null
  // Hijacked: the onSend hook does not run, so the stream names its replica itself.
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-replica': name })
  res.write('retry: 2000\n\n')
  const tick = () => {
    id += 1
    price = Math.max(1, price + (Math.random() - 0.5) * 2)
    const data = JSON.stringify({ n: id, symbol: 'STRM', price: Number(price.toFixed(2)), sentAt: Date.now(), via, replica: name })
    res.write(`id: ${id}\nevent: tick\ndata: ${data}\n\n`)
  }
  log(`[live] ticker stream opened (from event ${id})`)
  tick()
  const timer = setInterval(tick, tickMs)
  tickers.add(res)
  res.on('close', () => {
    clearInterval(timer)
    tickers.delete(res)
    log(`[live] ticker stream closed after event ${id}`)
  })
}

function pickProtocol (offered) {
  return SUBPROTOCOLS.find(protocol => offered.has(protocol)) ?? false
}

function joinChat (wss, socket, request, log) {
  const protocol = socket.protocol
  const via = request.headers.via ?? null
  const offered = request.headers['sec-websocket-protocol']?.split(',').map(name => name.trim()).join(', ') ?? 'none'
  log(`[live] chat client joined with subprotocol "${protocol}" (offered: ${offered}), via ${via ?? 'none'}`)
  // A client that asks (/chat?welcome=1, as the page does) learns at once how it reached the
  // service; others get only answers to what they send.
  if (new URL(request.url, 'http://live').searchParams.get('welcome') === '1') {
    socket.send(JSON.stringify({ type: 'welcome', protocol, via, at: Date.now() }))
  }
  socket.on('message', (data, isBinary) => {
    if (protocol !== 'chat.v2') {
      socket.send(data, { binary: isBinary })
      return
    }
    const text = data.toString()
    socket.send(JSON.stringify({ type: 'echo', text, protocol, via, at: Date.now() }))
    for (const other of wss.clients) {
      if (other !== socket && other.protocol === 'chat.v2') other.send(JSON.stringify({ type: 'chat', text, at: Date.now() }))
    }
  })
  socket.on('close', (code) => log(`[live] chat client left (close code ${code})`))
}
