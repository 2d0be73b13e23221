// Shared pieces of the hostile-input suite: an ingress built like the example's (deadline
// first, then the proxy), a raw upstream that records every byte it receives, raw clients,
// and the checks every test ends with (the process still answers, file descriptors are back).
import Fastify, { type FastifyHttpOptions, type FastifyInstance } from 'fastify'
import type http from 'node:http'
import net from 'node:net'
import { readdirSync } from 'node:fs'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Test } from 'tap'
import deadline from '../../plugins/deadline/index.js'
import proxy from '../../plugins/proxy/index.js'
import { port } from './proxy-servers.js'

/** One request as the raw upstream framed it: head text, body payload (de-chunked) as latin1. */
export interface SeenRequest {
  head: string
  body: string
}

/** What the upstream writes back for one framed request, or `null` to write nothing itself. */
export type Responder = (request: SeenRequest, socket: net.Socket, index: number) => string | null

/** A raw TCP upstream; `bytes` holds exactly what arrived on each connection, in order. */
export interface RecordingUpstream {
  url: string
  /** One entry per accepted connection: everything received on it. */
  bytes: string[]
  /** Requests framed by Content-Length / chunked, as a strict HTTP/1.1 server would. */
  requests: SeenRequest[]
  sockets: Set<net.Socket>
  /** Everything received on every connection, joined. */
  all: () => string
  /** Called as soon as a request head is complete, before its body has arrived. */
  onHead: ((socket: net.Socket, head: string) => void) | null
}

export const OK = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok'

/**
 * Hand-written rather than node:http: Node's server reads its socket in C++ (no 'data' events
 * for a recorder to see) and would itself refuse the framing errors this suite is about.
 * Each complete request is answered by `respond` (200 "ok" by default).
 */
export async function recordingUpstream (t: Test, respond: Responder = () => OK): Promise<RecordingUpstream> {
  const up: RecordingUpstream = { url: '', bytes: [], requests: [], sockets: new Set(), all: () => up.bytes.join(''), onHead: null }
  const server = net.createServer((socket) => {
    const slot = up.bytes.push('') - 1
    up.sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => up.sockets.delete(socket))
    let pending = ''
    let headSeen = false
    socket.on('data', (data: Buffer) => {
      const text = data.toString('latin1')
      up.bytes[slot] += text
      pending += text
      if (!headSeen && pending.includes('\r\n\r\n')) {
        headSeen = true
        up.onHead?.(socket, pending)
      }
      let request: { request: SeenRequest, rest: string } | null
      while ((request = frameRequest(pending)) !== null) {
        pending = request.rest
        headSeen = false
        const index = up.requests.push(request.request) - 1
        const answer = respond(request.request, socket, index)
        if (answer !== null && socket.writable) socket.write(answer, 'latin1')
      }
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const s of up.sockets) s.destroy()
    server.close()
    await once(server, 'close')
  })
  up.url = `http://127.0.0.1:${port(server)}`
  return up
}

/** Splits one request off the front of `data`, or null when it is not complete yet. */
function frameRequest (data: string): { request: SeenRequest, rest: string } | null {
  const end = data.indexOf('\r\n\r\n')
  if (end === -1) return null
  const head = data.slice(0, end + 4)
  const after = data.slice(end + 4)
  if (/\r\ntransfer-encoding:[^\r]*chunked/i.test(head)) {
    const chunks = decodeChunked(after)
    return chunks === null ? null : { request: { head, body: chunks.body }, rest: after.slice(chunks.used) }
  }
  const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0)
  if (after.length < length) return null
  return { request: { head, body: after.slice(0, length) }, rest: after.slice(length) }
}

/** The payload of a chunked body (no trailers expected) and how many bytes it took; null if incomplete. */
function decodeChunked (data: string): { body: string, used: number } | null {
  let body = ''
  let at = 0
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at)
    if (lineEnd === -1) return null
    const size = parseInt(data.slice(at, lineEnd), 16)
    if (size === 0) return data.length < lineEnd + 4 ? null : { body, used: lineEnd + 4 }
    if (data.length < lineEnd + 2 + size + 2) return null
    body += data.slice(lineEnd + 2, lineEnd + 2 + size)
    at = lineEnd + 2 + size + 2
  }
}

/** The paths of the request lines an upstream received (as a strict parser would read them). */
export function requestLines (up: RecordingUpstream): string[] {
  return up.requests.map(r => r.head.slice(0, r.head.indexOf('\r\n')))
}

export interface Ingress {
  app: FastifyInstance
  url: string
  port: number
}

export interface IngressOptions {
  /** Fastify's constructor options (server timeouts, `http` options). */
  fastify?: FastifyHttpOptions<http.Server>
  /** The deadline plugin's `timeout`; 2 s as in the example. */
  timeout?: number
  /** Routes of the app's own, added beside the proxy. */
  routes?: (app: FastifyInstance) => void
}

/** Deadline first, then the proxy with WebSocket pass-through on: as the example ingress is built. */
export async function ingress (t: Test, upstream: string, options: IngressOptions = {}): Promise<Ingress> {
  const app = Fastify({ logger: false, ...options.fastify })
  await app.register(deadline, { timeout: options.timeout ?? 2000, streamIdleTimeout: 15_000 })
  options.routes?.(app)
  await app.register(proxy, { upstream, prefix: '/', websocket: true })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { app.server.closeAllConnections(); await app.close() })
  const p = port(app.server)
  return { app, url: `http://127.0.0.1:${p}`, port: p }
}

/** What a raw client saw: every byte, and whether the server closed the connection. */
export interface RawResult {
  text: string
  closed: boolean
}

/**
 * Writes `bytes` on a new connection (a list is written piece by piece, one per tick) and
 * collects the answer until the server closes, or `idleMs` pass without a new byte once
 * something arrived (a keep-alive connection is then ended by us: `closed` stays false).
 */
export function rawExchange (p: number, bytes: string | string[], idleMs = 300, maxMs = 10_000): Promise<RawResult> {
  return new Promise((resolve) => {
    const socket = net.connect(p, '127.0.0.1')
    let text = ''
    let closedByServer = false
    let idle: NodeJS.Timeout | undefined
    const overall = setTimeout(() => socket.destroy(), maxMs)
    const finish = (): void => {
      clearTimeout(overall)
      clearTimeout(idle)
      resolve({ text, closed: closedByServer })
    }
    socket.setEncoding('latin1')
    socket.on('data', (data: string) => {
      text += data
      clearTimeout(idle)
      idle = setTimeout(() => socket.destroy(), idleMs)
    })
    socket.on('end', () => { closedByServer = true })
    socket.on('error', () => { closedByServer = true })
    socket.on('close', finish)
    socket.on('connect', async () => {
      for (const piece of Array.isArray(bytes) ? bytes : [bytes]) {
        if (socket.destroyed) return
        socket.write(piece, 'latin1')
        await new Promise(resolve => setImmediate(resolve))
      }
    })
  })
}

/** The status lines in a raw answer, in order (`HTTP/1.1 400 Bad Request`, ...). */
export function statusLines (text: string): string[] {
  return text.match(/HTTP\/1\.1 \d{3}[^\r\n]*/g) ?? []
}

export function openFds (): number {
  return readdirSync('/proc/self/fd').length
}

/**
 * Polls until the process's open file descriptors are back to `baseline` (+ `margin`), up to
 * `deadlineMs`; returns the last count. Sockets close asynchronously after 'close' events, so
 * polling with a bound is the only honest wait.
 */
export async function fdsSettle (baseline: number, margin = 2, deadlineMs = 5000): Promise<number> {
  const stop = Date.now() + deadlineMs
  let count = openFds()
  while (count > baseline + margin && Date.now() < stop) {
    await sleep(25)
    count = openFds()
  }
  return count
}

/**
 * The checks every test ends with: a healthy request still gets its 200, and once the upstream
 * has closed its connections (the proxy's keep-alive pool holds some, legitimately) the
 * process has no more descriptors open than `baseline`, taken when both servers were listening.
 */
export async function checkHealthy (t: Test, server: Ingress, up: RecordingUpstream, baseline: number): Promise<void> {
  const answer = await rawExchange(server.port, 'GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
  t.match(answer.text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nok$/, 'the process still answers a healthy request')
  for (const socket of up.sockets) socket.destroy()
  const fds = await fdsSettle(baseline)
  t.ok(fds <= baseline + 2, `file descriptors back to baseline (${fds} open, baseline ${baseline})`)
}

/** The first response in a raw answer: status, lower-cased headers, and the bytes after the head. */
export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
}

export function parseResponse (text: string): RawResponse {
  const end = text.indexOf('\r\n\r\n')
  const lines = text.slice(0, end === -1 ? text.length : end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(lines[0]?.slice(9, 12)), headers, body: end === -1 ? '' : text.slice(end + 4) }
}

/** The value at percentile `p` (0..100) of a list of numbers. */
export function percentile (values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}
