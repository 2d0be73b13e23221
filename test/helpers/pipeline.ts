// Pipelined upgrades: an HTTP + WebSocket upstream that records what it served (upgradeUpstream;
// hostile.ts's recordingUpstream is the raw-TCP byte recorder), the requests the tests send, and a
// reader that splits what a raw client received into HTTP answers.
import http from 'node:http'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { WebSocketServer } from 'ws'
import { portOf, type Teardown } from './ws-servers.js'
import { within } from './bounded.js'

/** A masked text frame 'hello' (RFC 6455 5.7) and the upstream's unmasked echo of it. */
export const FRAME = Buffer.from([0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e])
export const ECHO = Buffer.concat([Buffer.from([0x81, 0x05]), Buffer.from('hello')])
export const BIG = 4 * 1024 * 1024

export const H2C = 'GET /ws/x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n'
export const POST_UPGRADE = 'POST /ws/p HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello'
export const NO_KEY = 'GET /ws/nokey HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n'

export function get (path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: a\r\n${extra}\r\n`
}

export interface UpgradeUpstream {
  url: string
  seen: string[]
  upgrades: string[]
  /** `seen` and `upgrades` in the order they happened, the upgrades as `upgrade <path>`. */
  log: string[]
  sockets: Set<Socket>
  tunnels: Set<Socket>
  slowArrived: () => Promise<void>
  release: () => void
}

/**
 * The upstream, an HTTP server with a `ws` echo server on it, recording every request it
 * served (method, path, body, and whether it still carried `Upgrade`) and every upgrade. `/slow`
 * answers when the test releases it; `/big` streams 4 MB.
 */
export async function upgradeUpstream (t: Teardown): Promise<UpgradeUpstream> {
  const seen: string[] = []
  const upgrades: string[] = []
  const log: string[] = []
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
      log.push(seen[seen.length - 1])
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
    log.push(`upgrade ${req.url ?? ''}`)
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
    log,
    sockets,
    tunnels,
    slowArrived: async () => {
      if (slow.length === 0) await within(10_000, new Promise<void>(resolve => slowWaiters.push(resolve)), 'the /slow request at the upstream')
    },
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

export interface Answer { status: number, head: string, body: string }

/**
 * Splits a client's bytes into HTTP responses (Content-Length, chunked, or no body for HEAD
 * and 101); `rest` is whatever follows the last complete one (frames, after a 101).
 */
export function splitAnswers (bytes: Buffer, methods: string[]): { answers: Answer[], rest: Buffer } {
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

/** A raw client: its socket (TCP or TLS) and every byte it received so far. */
export interface Client { socket: Socket, received: () => Buffer }

/**
 * Waits until `methods.length` answers and `restBytes` more bytes arrived (rejects if the server
 * closes first, or after `ms`, saying how many answers came).
 */
export async function answersFor (client: Client, methods: string[], restBytes = 0, ms = 10_000): Promise<{ answers: Answer[], rest: Buffer }> {
  const stop = Date.now() + ms
  for (;;) {
    const split = splitAnswers(client.received(), methods)
    if (split.answers.length === methods.length && split.rest.length >= restBytes) return split
    if (client.socket.destroyed || client.socket.readableEnded) throw new Error(`closed after ${split.answers.length} answers`)
    const missing = `${methods.length} answers and ${restBytes} bytes after them (${split.answers.length} answers and ${split.rest.length} bytes so far)`
    await within(Math.max(0, stop - Date.now()), nextEvent(client), missing)
  }
}

/** The client socket's next 'data', 'end' or 'close'. */
async function nextEvent (client: Client): Promise<void> {
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
