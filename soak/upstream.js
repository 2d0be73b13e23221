// The soak's upstream, in the runner's process so that it can count its own sockets and record
// what each operation did on its side. Every request (and upgrade) carries an `x-soak-id`
// header; the runner awaits events per id ('request', 'data', 'finished', 'cut', 'upgrade',
// 'ws-closed'). The route is the path's last segment, so the proxy's prefix does not matter.
import { createServer } from 'node:http'
import { once } from 'node:events'
import { WebSocketServer } from 'ws'

export const CHUNK = Buffer.alloc(16 * 1024, 'u')

const REFUSAL = 'HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 7\r\nConnection: close\r\n\r\nrefused'

const routes = {
  ok (req, res) {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 }).end('ok\n')
  },
  echo (req, res) {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    req.pipe(res)
  },
  /** Never answers: the proxy (client abort, deadline) has to cancel it. */
  hang () {},
  /** An event stream: one event, then silence (for the drain phase). */
  events (req, res) {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(`id: 1\ndata: ${'e'.repeat(120)}\n\n`)
  },
  /** A head and one chunk, then silence: an endless download. */
  stream (req, res) {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.write(CHUNK)
  },
  upload (req, res, id, up) {
    req.once('data', () => up.mark(id, 'data'))
    req.on('end', () => res.writeHead(200, { 'content-length': 0 }).end())
  },
  reset (req) {
    req.socket.resetAndDestroy()
  },
  /** A Content-Length head and a quarter of the body; the runner resets it (`reset(id)`) once its client has them. */
  'reset-mid' (req, res, id, up) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': CHUNK.length * 4 })
    res.write(CHUNK)
    up.held.set(id, req.socket)
  }
}

/** Which events happened per id, and who awaits one that has not happened yet. */
function eventRecords () {
  const records = new Map() // id -> { events: Set, waiters: Map<event, resolve[]> }
  const record = (id) => {
    let entry = records.get(id)
    if (entry === undefined) records.set(id, (entry = { events: new Set(), waiters: new Map() }))
    return entry
  }
  return {
    mark (id, event) {
      const entry = record(id)
      entry.events.add(event)
      for (const resolve of entry.waiters.get(event) ?? []) resolve()
      entry.waiters.delete(event)
    },
    /** Resolves when `event` has happened (or happens) for `id`. */
    when (id, event) {
      const entry = record(id)
      if (entry.events.has(event)) return Promise.resolve()
      return new Promise((resolve) => {
        entry.waiters.set(event, [...(entry.waiters.get(event) ?? []), resolve])
      })
    },
    seen: (id, event) => records.get(id)?.events.has(event) === true,
    forget: (id) => records.delete(id)
  }
}

/** Answers each request by its route; marks 'request', then 'finished' or 'cut' when it closes. */
function answerRequests (server, { mark }, reached, held) {
  server.on('request', (req, res) => {
    const id = req.headers['x-soak-id']
    reached.add(id)
    mark(id, 'request')
    res.once('close', () => mark(id, res.writableFinished ? 'finished' : 'cut'))
    const route = routes[req.url.slice(req.url.lastIndexOf('/') + 1)]
    if (route === undefined) res.writeHead(404, { 'content-length': 0 }).end()
    else route(req, res, id, { mark, held })
  })
}

/** The server's open connections, for the runner's count. */
function trackSockets (server) {
  const sockets = new Set()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  return sockets
}

/**
 * Accepts each upgrade as an echoing WebSocket (id -> open socket in the map returned), except
 * '/refuse' ones, answered with a 403; marks 'upgrade', then 'ws-closed'.
 */
function acceptUpgrades (server, { mark }, reached) {
  const tunnels = new Map()
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
  server.on('upgrade', (req, socket, head) => {
    const id = req.headers['x-soak-id']
    reached.add(id)
    mark(id, 'upgrade')
    socket.on('error', () => {})
    if (req.url.endsWith('/refuse')) {
      socket.end(REFUSAL)
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      tunnels.set(id, ws)
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
      ws.on('error', () => {})
      ws.once('close', () => {
        tunnels.delete(id)
        mark(id, 'ws-closed')
      })
    })
  })
  return tunnels
}

export async function startUpstream () {
  const events = eventRecords()
  const reached = new Set() // every id that reached the upstream, kept for the whole run
  const held = new Map() // id -> socket of a 'reset-mid' response
  const server = createServer()
  answerRequests(server, events, reached, held)
  // Idle keep-alive connections from the proxy's pool close ~1 s after their last response
  // (undici keeps a socket for the hinted 3 s minus its 2 s margin), so the upstream's
  // connection count returns to exactly 0 between phases instead of counting pooled sockets.
  server.keepAliveTimeout = 3000
  const sockets = trackSockets(server)
  const tunnels = acceptUpgrades(server, events, reached)

  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    when: events.when,
    seen: events.seen,
    forget: events.forget,
    reached: (id) => reached.has(id),
    killTunnel: (id) => tunnels.get(id)?.terminate(),
    /** A TCP reset on a 'reset-mid' response (reset right after writing, the proxy could lose the head unread). */
    reset (id) {
      held.get(id)?.resetAndDestroy()
      held.delete(id)
    },
    connections: () => sockets.size,
    async close () {
      for (const socket of sockets) socket.destroy()
      server.close()
    }
  }
}
