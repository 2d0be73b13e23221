// The example ingress's answers to what Node's HTTP parser refuses: each with a stable `code`
// (Fastify's own carry none), and the ingress still serves afterwards. Raw sockets, since no
// client library sends such heads.
import net from 'node:net'
import t from 'tap'
import { startExample } from '../helpers/example-app.js'
import { within } from '../helpers/bounded.js'

/** Writes `bytes` on a new connection; resolves with everything the ingress sent until it closed. */
async function rawExchange (port: number, bytes: string): Promise<string> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  socket.setEncoding('latin1')
  let received = ''
  socket.on('data', (chunk: string) => { received += chunk })
  socket.write(bytes)
  await within(10_000, new Promise(resolve => socket.once('close', resolve)), 'the ingress closing the connection')
  return received
}

function answer (raw: string): { status: number, body: { code?: string, statusCode?: number, cause?: string } } {
  const end = raw.indexOf('\r\n\r\n')
  return { status: Number(raw.split(' ')[1]), body: JSON.parse(raw.slice(end + 4)) }
}

t.test('the example answers parser refusals with a code, and keeps serving', async (t) => {
  const app = await startExample(t, { HEADERS_TIMEOUT_MS: '500', REQUEST_TIMEOUT_MS: '0' })
  const port = Number(new URL(app.ingress).port)
  const garbage = answer(await rawExchange(port, 'NOT HTTP AT ALL\r\n\r\n'))
  t.equal(garbage.status, 400)
  t.equal(garbage.body.code, 'DEMO_BAD_REQUEST')
  const big = answer(await rawExchange(port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`))
  t.equal(big.status, 431)
  t.equal(big.body.code, 'DEMO_HEADERS_TOO_LARGE')
  t.equal(big.body.cause, 'HPE_HEADER_OVERFLOW', 'the parser\'s own code as the cause')
  // A head that never finishes: refused after headersTimeout (500 ms here).
  const slow = answer(await rawExchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n'))
  t.equal(slow.status, 408)
  t.equal(slow.body.code, 'DEMO_CLIENT_TIMEOUT')
  const settings = await within(5000, fetch(`${app.ingress}/api/settings`), 'an answer after the refusals')
  t.equal(settings.status, 200, 'the ingress still serves')
  await settings.body?.cancel()
  t.equal((await within(15_000, app.stop(), 'the example\'s exit after SIGTERM')).code, 0)
})
