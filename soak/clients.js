// Client plumbing for the soak's operations: raw TCP exchanges (every phase of an abort is
// reachable only below an HTTP client library), a keep-alive node:http agent for healthy
// requests, and ws clients for tunnels. Every wait is on an event, bounded by `within`.
import net from 'node:net'
import http from 'node:http'
import { once } from 'node:events'
import WebSocket from 'ws'

export class Unexpected extends Error {}

export function check (condition, message) {
  if (!condition) throw new Unexpected(message)
}

/** `promise`, or a rejection naming `what` after `ms`: an operation that hangs fails, it does not stall the soak. */
export function within (promise, ms, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Unexpected(`timed out waiting for ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// Client connections still open, so that an operation that failed (timed out) does not leave
// its connection for the proxy to hold: the failure is counted once, as an unexpected outcome.
const open = new Set()

function track (emitter, destroy) {
  open.add(destroy)
  emitter.once('close', () => open.delete(destroy))
}

/** Closes the connections failed operations left open; returns how many there were. */
export function closeLeftovers () {
  const count = open.size
  for (const destroy of open) destroy()
  open.clear()
  return count
}

/** A raw connection to the proxy; `received()` is everything read so far, `closed` resolves on close. */
export async function connect (port) {
  const socket = net.connect(port, '127.0.0.1')
  const chunks = []
  socket.on('data', (chunk) => chunks.push(chunk))
  socket.on('error', () => {})
  track(socket, () => socket.destroy())
  const closed = once(socket, 'close')
  await once(socket, 'connect')
  return { socket, closed, received: () => Buffer.concat(chunks) }
}

/** Resolves once the connection has received at least `bytes` bytes. */
export async function receivedAtLeast (connection, bytes) {
  while (connection.received().length < bytes) {
    await Promise.race([once(connection.socket, 'data'), connection.closed])
    if (connection.socket.destroyed && connection.received().length < bytes) {
      throw new Unexpected(`connection closed after ${connection.received().length} bytes, expected ${bytes}`)
    }
  }
}

export function head (method, path, id, headers = []) {
  return [`${method} ${path} HTTP/1.1`, 'Host: soak', `X-Soak-Id: ${id}`, ...headers, '', ''].join('\r\n')
}

/** A raw response, split: status code, head text (lower-cased), body bytes. */
export function parse (bytes) {
  const end = bytes.indexOf('\r\n\r\n')
  const text = bytes.subarray(0, end === -1 ? bytes.length : end).toString('latin1').toLowerCase()
  return { status: Number(text.slice(9, 12)), head: text, body: end === -1 ? Buffer.alloc(0) : bytes.subarray(end + 4) }
}

/** Sends `text` with Connection: close and reads until the proxy closes the connection. */
export async function exchange (port, text) {
  const connection = await connect(port)
  connection.socket.write(text)
  await connection.closed
  return parse(connection.received())
}

/** A node:http request through a shared keep-alive agent; resolves with status and body. */
export function request (agent, port, method, path, id, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ agent, host: '127.0.0.1', port, method, path, headers: { 'x-soak-id': id } }, (res) => {
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** An open ws client through the proxy, after one echoed message. */
export async function openTunnel (port, id) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/ws/echo`, { headers: { 'x-soak-id': id }, perMessageDeflate: false })
  ws.on('error', () => {})
  track(ws, () => ws.terminate())
  const closed = once(ws, 'close')
  await Promise.race([once(ws, 'open'), closed.then(() => { throw new Unexpected('tunnel closed before it opened') })])
  ws.send(`ping ${id}`)
  const [data] = await once(ws, 'message')
  check(data.toString() === `ping ${id}`, `tunnel echo was ${data}`)
  return { ws, closed }
}

export const upgradeHead = (path, id) => head('GET', path, id, [
  'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='
])
