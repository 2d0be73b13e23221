import http, { type IncomingMessage } from 'node:http'
import type net from 'node:net'
import { once } from 'node:events'
import type { Test } from 'tap'
import { WebSocketServer, type WebSocket } from 'ws'
import { UpstreamPool } from '../../plugins/proxy/upstream/pool.js'
import { portOf } from '../helpers/ws-servers.js'
import { PROMPTLY, within } from '../helpers/bounded.js'

// WebSocket replicas for the pool tests: real `ws` servers on 127.0.0.1, each echoing every
// message as `<name>:<message>`, each keeping the handshakes it received, and each stoppable
// and restartable on the same port.

export interface WsReplica {
  name: string
  url: string
  /** The origin the proxy connects to: what `tunnel:closed` names. */
  origin: string
  port: number
  /** The handshakes it received (its 101s and its refusals). */
  handshakes: IncomingMessage[]
  /** Its WebSocket connections open now. */
  open: () => number
  /** Closes every WebSocket it holds (a close frame from the replica's side). */
  closeAll: () => void
  /** Refuses the next handshakes with this status (null: accepts them). */
  refuseWith: number | null
  /** Stops listening and cuts every open connection (a crashed replica: connect refused). */
  stop: () => Promise<void>
  /** Listens again on the same port. */
  restart: () => Promise<void>
}

export async function wsReplica (t: Test, name: string): Promise<WsReplica> {
  const server = http.createServer((_req, res) => { res.statusCode = 426; res.end('upgrade required') })
  const sockets = new Set<net.Socket>()
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  const handshakes: IncomingMessage[] = []
  const replica: WsReplica = {
    name,
    url: '',
    origin: '',
    port: 0,
    handshakes,
    open: () => wss.clients.size,
    closeAll: () => { for (const ws of wss.clients) ws.close() },
    refuseWith: null,
    stop: async () => {
      if (!server.listening) return
      const closed = once(server, 'close')
      server.close()
      for (const socket of sockets) socket.destroy()
      await closed
    },
    restart: async () => {
      server.listen(replica.port, '127.0.0.1')
      await once(server, 'listening')
    }
  }
  const wss = new WebSocketServer({
    server,
    verifyClient: (info, done) => {
      handshakes.push(info.req)
      if (replica.refuseWith === null) done(true)
      else done(false, replica.refuseWith)
    }
  })
  wss.on('connection', (ws: WebSocket) => {
    ws.on('message', (data) => ws.send(`${name}:${String(data)}`))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  replica.port = portOf(server)
  replica.origin = `http://127.0.0.1:${replica.port}`
  replica.url = replica.origin
  t.teardown(async () => {
    await replica.stop()
    wss.close()
  })
  return replica
}

export async function wsReplicas (t: Test, names: string[]): Promise<WsReplica[]> {
  return await Promise.all(names.map(async name => await wsReplica(t, name)))
}

/** Sends `text` on `ws` and resolves with the echo: `<replica name>:<text>`; bounded. */
export async function echo (ws: WebSocket, text: string): Promise<string> {
  const answer = once(ws, 'message') as Promise<[Buffer]>
  ws.send(text)
  const [data] = await within(PROMPTLY, answer, `the echo of ${text}`)
  return data.toString()
}

/** The name of the replica that answered an echo. */
export function servedBy (answer: string): string {
  return answer.slice(0, answer.indexOf(':'))
}

/** Closes `ws` and resolves once it is closed; bounded. */
export async function closeClient (ws: WebSocket): Promise<void> {
  if (ws.readyState === ws.CLOSED) return
  const closed = once(ws, 'close')
  ws.close()
  await within(PROMPTLY, closed, 'the client\'s close')
}

/**
 * The pools the proxy registrations of this test start (captured from the class, the pool being
 * the registration's own), to read their replicas' in-flight counts.
 */
export function capturePools (t: Test): UpstreamPool[] {
  const pools: UpstreamPool[] = []
  const start = UpstreamPool.prototype.start
  UpstreamPool.prototype.start = async function (this: UpstreamPool, ...args: Parameters<UpstreamPool['start']>) {
    pools.push(this)
    return await start.apply(this, args)
  }
  t.teardown(() => { UpstreamPool.prototype.start = start })
  return pools
}

/** In flight per replica origin (leaving ones included), from a pool's snapshot. */
export function inflight (pool: UpstreamPool): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const replica of pool.snapshot()) counts[replica.origin] = replica.inflight
  return counts
}
