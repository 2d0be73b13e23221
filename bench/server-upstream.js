// The upstream behind every proxy in the proxy, streams and websocket benches (node:http + ws, no framework
// so it costs as little CPU as possible on a 2-core machine):
//   GET /small            12-byte text body
//   GET /sse?n=&every=&phase=  n SSE events, one every `every` ms (the first after `phase` ms,
//                         default `every`), each carrying its write time
//   GET /big?mib=         a Content-Length body of `mib` MiB, written with backpressure
//   POST /upload          reads the whole body, then answers its length
//   upgrade /ws           WebSocket echo
// PORTS=n (default 1) listens on n ports with the same handler, so a pool of n replicas can be
// served by one process (the pools bench). The parent's 'counts' message is answered with the
// requests each port received since the last 'counts' (which resets them).
import { createServer } from 'node:http'
import { Readable, pipeline } from 'node:stream'
import { WebSocketServer } from 'ws'
import { serve, httpServer } from './child.js'

const chunk = Buffer.alloc(64 * 1024, 'x')

function * repeat (buffer, times) {
  for (let i = 0; i < times; i++) yield buffer
}

const routes = {
  '/small' (req, res) {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 12 })
    res.end('hello world\n')
  },
  async '/sse' (req, res, query) {
    const events = Number(query.get('n') ?? 200)
    const every = Number(query.get('every') ?? 10)
    // the streams bench spreads the events of its 2,000 streams over the interval with it
    const phase = Number(query.get('phase') ?? every)
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    // a stream the client left (res.destroyed) stops at its next event
    for (let i = 0; i < events && !res.destroyed; i++) {
      await new Promise((resolve) => setTimeout(resolve, i === 0 ? phase : every))
      // CLOCK_MONOTONIC is shared by all processes: the client subtracts it from its own reading
      res.write(`data: ${Number(process.hrtime.bigint()) / 1e6}\n\n`)
    }
    res.end()
  },
  '/upload' (req, res) {
    let length = 0
    req.on('data', (data) => { length += data.length })
    req.on('end', () => res.end(String(length)))
  },
  '/big' (req, res, query) {
    const chunks = Number(query.get('mib') ?? 1024) * 16
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': chunks * chunk.length })
    // pipeline gives backpressure and stops the generator if the reader goes away
    pipeline(Readable.from(repeat(chunk, chunks)), res, () => {})
  }
}

function handle (req, res) {
  const url = new URL(req.url, 'http://upstream')
  const route = routes[url.pathname]
  if (route === undefined) {
    res.writeHead(404).end()
    return
  }
  route(req, res, url.searchParams)
}

// Requests per port: one handler per server, so counting costs an increment, not a getsockname.
const counts = Array.from({ length: Number(process.env.PORTS ?? 1) }, () => 0)
const servers = counts.map((_, i) => createServer((req, res) => {
  counts[i]++
  handle(req, res)
}))
for (const one of servers) one.keepAliveTimeout = 60_000
const [server, ...extra] = servers

process.on('message', (message) => {
  if (message.type !== 'counts') return
  process.send({ type: 'counts', counts: [...counts] })
  counts.fill(0)
})

const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false })
wss.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }))
})

const [listen, close] = httpServer(server)
const others = extra.map(httpServer)
await serve(async () => {
  const port = await listen()
  const ports = [port]
  for (const [listenOther] of others) ports.push(await listenOther())
  return { port, ports }
}, async () => {
  for (const [, closeOther] of others) await closeOther()
  await close()
})
