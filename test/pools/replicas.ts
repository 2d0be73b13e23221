import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import type { Test } from 'tap'
import { port } from '../helpers/proxy-servers.js'

// Upstream replicas for the pool tests: real servers on 127.0.0.1, each answering with its own
// name, each keeping what it saw, and each stoppable and restartable on the same port.

export interface TestReplica {
  name: string
  url: string
  port: number
  /** Requests it received (method, url, host, body). */
  seen: Array<{ method: string, url: string, host: string, body: string, budget: number | null }>
  /** Stops listening and cuts every open connection (a crashed replica: connect refused). */
  stop: () => Promise<void>
  /** Listens again on the same port. */
  restart: () => Promise<void>
}

export type ReplicaHandler = (req: http.IncomingMessage, res: http.ServerResponse, name: string, body: string) => void

/** Answers `200 <name>` (text/plain) to everything. */
export const answerName: ReplicaHandler = (_req, res, name) => {
  res.setHeader('content-type', 'text/plain')
  res.end(name)
}

export async function replica (t: Test, name: string, handler: ReplicaHandler = answerName): Promise<TestReplica> {
  const seen: TestReplica['seen'] = []
  const sockets = new Set<net.Socket>()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString()
      const budget = req.headers['x-request-timeout-ms']
      seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '', body, budget: budget === undefined ? null : Number(budget) })
      handler(req, res, name, body)
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const listeningPort = port(server)
  const stop = async (): Promise<void> => {
    if (!server.listening) return
    const closed = once(server, 'close')
    server.close()
    for (const socket of sockets) socket.destroy()
    await closed
  }
  const restart = async (): Promise<void> => {
    server.listen(listeningPort, '127.0.0.1')
    await once(server, 'listening')
  }
  t.teardown(stop)
  return { name, url: `http://127.0.0.1:${listeningPort}`, port: listeningPort, seen, stop, restart }
}

export async function replicas (t: Test, names: string[], handler?: ReplicaHandler): Promise<TestReplica[]> {
  return await Promise.all(names.map(async name => await replica(t, name, handler)))
}

/** A GET through the ingress: status and body. */
export async function get (url: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  const res = await fetch(url, { headers })
  return { status: res.status, body: await res.text() }
}

/** How many answers came from each replica name. */
export function tally (bodies: string[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const body of bodies) counts[body] = (counts[body] ?? 0) + 1
  return counts
}
