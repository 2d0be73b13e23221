// Slow clients (slowloris): many connections that trickle their request head, say nothing at
// all, or trickle a body. With the server timeouts an ingress should set (see
// example-app/config.js), Node drops a slow head after `headersTimeout` and a slow request after
// `requestTimeout`; on proxied routes the deadline answers a slow body first. Meanwhile a healthy
// client keeps being served. Counts and the latency bound are small and generous here so that a
// loaded 2-core CI machine passes; bench/slowloris.js runs the 1,000 + 200 version.
import t, { type Test } from 'tap'
import net from 'node:net'
import { once } from 'node:events'
import { within } from '../helpers/bounded.js'
import { checkHealthy, ingress, openFds, parseResponse, percentile, rawExchange, recordingUpstream } from '../helpers/hostile.js'

const HEADERS_TIMEOUT = 2000
const REQUEST_TIMEOUT = 4000
const CHECK_INTERVAL = 250
const DEADLINE = 2000
const TRICKLE_MS = 300

interface Slow {
  kind: string
  socket: net.Socket
  /** Taken before connecting: no server timer can have started earlier. */
  connectedAt: number
  /** ms from connectedAt to the server's close; undefined while open. */
  closedAfter?: number
  closedByServer: boolean
  text: string
}

/** Opens a slow client that writes `first`, then `drip` every TRICKLE_MS, until the server closes. */
async function slowClient (port: number, kind: string, first: string, drip: string): Promise<Slow> {
  const connectedAt = Date.now()
  const socket = net.connect(port, '127.0.0.1')
  const slow: Slow = { kind, socket, connectedAt, closedByServer: false, text: '' }
  socket.setEncoding('latin1')
  socket.on('data', (data: string) => { slow.text += data })
  socket.on('end', () => { slow.closedByServer = true })
  socket.on('error', () => { slow.closedByServer = true })
  socket.on('close', () => { slow.closedAfter = Date.now() - slow.connectedAt })
  await once(socket, 'connect')
  if (first !== '') socket.write(first)
  if (drip !== '') {
    const timer = setInterval(() => { if (socket.writable) socket.write(drip) }, TRICKLE_MS)
    socket.on('close', () => clearInterval(timer))
  }
  return slow
}

/** Resolves once `server` holds at least `count` connections (bounded: the assertions report a shortfall). */
async function accepted (server: net.Server, count: number): Promise<void> {
  const stop = Date.now() + 5000
  const connections = (): Promise<number> => new Promise(resolve => server.getConnections((_err, n) => resolve(n)))
  while (await connections() < count && Date.now() < stop) await new Promise(resolve => setTimeout(resolve, 20))
}

/** `count` sequential healthy GETs on fresh connections; their latencies in ms. */
async function healthyLatencies (port: number, count: number): Promise<number[]> {
  const latencies: number[] = []
  for (let i = 0; i < count; i++) {
    const start = performance.now()
    const answer = await rawExchange(port, 'GET /healthy HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n')
    if (parseResponse(answer.text).status !== 200) throw new Error(`healthy request ${i} failed: ${answer.text.slice(0, 80)}`)
    latencies.push(performance.now() - start)
  }
  return latencies
}

t.test('slow heads, silent connections and slow bodies are dropped while a healthy client is served', async (t) => {
  const up = await recordingUpstream(t)
  // An upstream that answers an upload before reading it (as one refusing it would).
  up.onHead = (socket, head) => { if (head.startsWith('POST /early ')) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok') }
  const server = await ingress(t, up.url, {
    timeout: DEADLINE,
    fastify: {
      requestTimeout: REQUEST_TIMEOUT,
      http: { headersTimeout: HEADERS_TIMEOUT, requestTimeout: REQUEST_TIMEOUT, connectionsCheckingInterval: CHECK_INTERVAL }
    },
    // A route of the app's own, without a deadline, that reads the whole body: only requestTimeout guards it.
    routes: app => { app.post('/local', { config: { deadline: false } }, async (request) => ({ length: String(request.body).length })) }
  })
  const baseline = openFds()
  await healthyLatencies(server.port, 10) // warm-up: the first requests compile the code paths
  const unloaded = await healthyLatencies(server.port, 50)

  const slow = await openSlowClients(server.port)
  // A client's 'connect' comes when the kernel completes the handshake, the server's accept later:
  // measuring before the server took them all would time the kernel's accept queue, not the ingress.
  await accepted(server.app.server, slow.length)
  const loaded = await healthyLatencies(server.port, 50)
  const p99 = { unloaded: percentile(unloaded, 99), loaded: percentile(loaded, 99) }
  const slowest = [...loaded].sort((a, b) => b - a).slice(0, 3).map(ms => ms.toFixed(0))
  t.comment(`healthy p99: ${p99.unloaded.toFixed(1)} ms unloaded, ${p99.loaded.toFixed(1)} ms with ${slow.length} slow clients (slowest ${slowest.join(', ')} ms)`)
  // Generous: this catches a stalled server, not a slower one.
  t.ok(p99.loaded < Math.max(1000, 10 * p99.unloaded), 'the healthy client is served promptly under the slow ones')

  // Bounded: whatever is still open after the longest timeout plus margin counts as not dropped.
  const stop = Date.now() + REQUEST_TIMEOUT + 5000
  await Promise.race([
    Promise.all(slow.map(s => s.closedAfter === undefined ? once(s.socket, 'close') : null)),
    new Promise(resolve => setTimeout(resolve, stop - Date.now()))
  ])
  for (const s of slow) s.socket.destroy()

  checkEveryGroup(t, slow)

  t.notMatch(up.all(), /slow-head|\/local/, 'no slow head, and no request for an app route, reached the upstream')
  // Pooled connections are reused, so a slow body may follow a healthy request on its connection.
  const bodies = up.bytes.map(bytes => bytes.slice(bytes.indexOf('POST /slow-body '))).filter(bytes => bytes.startsWith('POST'))
  t.equal(bodies.length, 50, 'each slow proxied body reached the upstream, as it streamed')
  t.ok(bodies.every(bytes => /^[^]*?\r\n\r\nb{0,200}$/.test(bytes)), 'with only the bytes the client had sent, and last on its connection')
  await checkHealthy(t, server, up, baseline)
})

/** 200 slow heads, 20 silent connections, and 50 + 20 + 20 slow bodies (proxied, to an app route, answered early by the upstream). */
async function openSlowClients (port: number): Promise<Slow[]> {
  const opening: Array<Promise<Slow>> = []
  const body = (head: string): string => `${head}host: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 100000\r\n\r\n`
  for (let i = 0; i < 200; i++) opening.push(slowClient(port, 'head', 'GET /slow-head HTTP/1.1\r\nhost: x\r\n', 'x-a: b\r\n'))
  for (let i = 0; i < 20; i++) opening.push(slowClient(port, 'silent', '', ''))
  for (let i = 0; i < 50; i++) opening.push(slowClient(port, 'proxied body', body('POST /slow-body HTTP/1.1\r\n'), 'b'))
  for (let i = 0; i < 20; i++) {
    opening.push(slowClient(port, 'local body', 'POST /local HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 100000\r\n\r\n', 'b'))
  }
  for (let i = 0; i < 20; i++) opening.push(slowClient(port, 'answered body', body('POST /early HTTP/1.1\r\n'), 'b'))
  return await within(30_000, Promise.all(opening), `the connection of all ${opening.length} slow clients`)
}

/** Each kind of slow client was dropped by the limit that applies to it, with the right answer. */
function checkEveryGroup (t: Test, slow: Slow[]): void {
  checkGroup(t, slow, 'head', 408, HEADERS_TIMEOUT)
  checkGroup(t, slow, 'silent', 408, HEADERS_TIMEOUT)
  checkGroup(t, slow, 'proxied body', 504, DEADLINE)
  checkGroup(t, slow, 'local body', 408, REQUEST_TIMEOUT)
  // Node closes a connection whose response ended before its request did: nothing to wait for.
  const answered = slow.filter(s => s.kind === 'answered body')
  t.ok(answered.every(s => s.closedByServer && parseResponse(s.text).status === 200 && parseResponse(s.text).headers.connection === 'close'),
    'a slow body the upstream answered early gets that answer with connection: close, then is closed')
  t.ok(answered.every(s => (s.closedAfter ?? Infinity) < REQUEST_TIMEOUT), `not held until the request timeout (${Math.max(...answered.map(s => s.closedAfter ?? Infinity))} ms)`)
  const proxiedBodies = slow.filter(s => s.kind === 'proxied body').map(s => JSON.parse(parseResponse(s.text).body).code)
  t.ok(proxiedBodies.every(code => code === 'FST_STREAMLINE_DEADLINE_EXCEEDED'), 'the deadline answered each slow proxied body')
}

/** Every client of a group was closed by the server with `status`, no sooner than `after` ms. */
function checkGroup (t: Test, slow: Slow[], kind: string, status: number, after: number): void {
  const group = slow.filter(s => s.kind === kind)
  const times = group.map(s => s.closedAfter ?? Infinity)
  t.comment(`${kind}: ${group.length} clients, closed after ${Math.min(...times)}..${Math.max(...times)} ms`)
  t.ok(group.every(s => s.closedByServer && s.closedAfter !== undefined), `every ${kind} client was dropped by the server`)
  t.same([...new Set(group.map(s => parseResponse(s.text).status))], [status], `each got a ${status} first`)
  // Measured from before connecting, so no client can be dropped sooner, unless the timeout was not applied.
  t.ok(times.every(time => time >= after), `none before ${after} ms`)
}
