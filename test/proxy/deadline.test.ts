import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { proxyApp, rawUpstream, receive, upstream } from '../helpers/proxy-servers.js'
import { PROMPTLY, within } from '../helpers/bounded.js'

// The outermost ingress holds each request this long in a preHandler before proxying it: the
// budget it sends on must be what is left after that, not the whole timeout.
const HELD = 200

t.test('three chained ingresses share one budget: the outermost deadline wins', async (t) => {
  const up = await upstream(t, () => {})
  const { url: inner } = await proxyApp(t, { upstream: up.url }, { deadline: { timeout: 10_000, trustIncoming: true } })
  const { url: middle } = await proxyApp(t, { upstream: inner }, { deadline: { timeout: 10_000, trustIncoming: true } })
  const hold = async (): Promise<void> => { await sleep(HELD) }
  const { url: outer } = await proxyApp(t, { upstream: middle, preHandler: hold }, { deadline: { timeout: 600 } })

  const arrived = once(up.server, 'request') as Promise<[http.IncomingMessage, http.ServerResponse]>
  const client = receive(`${outer}/work`)
  const [req, res] = await within(PROMPTLY, arrived, 'the upstream got the request through three ingresses')
  const budget = Number(req.headers['x-request-timeout-ms'])
  t.ok(budget > 0 && budget <= 600, `the upstream was told ${budget} ms are left`)
  // Margin below the HELD ms already spent: timers may fire a little early or late.
  t.ok(budget <= 600 - (HELD - 50), `the budget (${budget} ms) excludes the ${HELD} ms the outer ingress already spent`)
  const received = await within(PROMPTLY, client, 'the client got the outer deadline\'s answer')
  t.equal(received.status, 504)
  t.ok(received.headersAt >= 550 && received.headersAt < 2000, `504 after ${received.headersAt} ms (outer timeout 600)`)
  if (!res.closed) await within(PROMPTLY, once(res, 'close'), 'the upstream request was aborted along the chain (its response closed)')
  t.notOk(res.writableFinished, 'the upstream request was aborted along the chain')
  t.equal(up.seen.length, 1)
})

t.test('retries: idempotent bodyless requests only, never past the deadline', async (t) => {
  const failures = new Map<string, number>()
  const up = await upstream(t, (req, res) => {
    req.resume()
    const key = `${req.method} ${req.url}`
    const left = failures.get(key) ?? 0
    if (left > 0) {
      failures.set(key, left - 1)
      res.writeHead(503, { 'retry-after': req.url === '/later' ? '1' : '0' })
      res.end('busy')
      return
    }
    res.end(`ok ${key}`)
  })
  const { url } = await proxyApp(t, [
    { upstream: up.url, prefix: '/r', retries: 2 },
    { upstream: up.url, prefix: '/none' }
  ], { deadline: { timeout: 400 } })

  failures.set('GET /twice', 2)
  const retried = await within(PROMPTLY, receive(`${url}/r/twice`), 'the client got an answer')
  t.equal(retried.status, 200)
  t.equal(retried.body, 'ok GET /twice')
  t.equal(up.seen.length, 3, 'two 503s, then the answer')

  failures.set('POST /twice', 2)
  const post = await within(PROMPTLY, receive(`${url}/r/twice`, { method: 'POST', headers: { 'content-type': 'text/plain' } }, 'x'), 'the client got an answer')
  t.equal(post.status, 503, 'a POST is never repeated')
  t.equal(up.seen.length, 4)

  failures.set('GET /later', 1)
  const later = await within(PROMPTLY, receive(`${url}/r/later`), 'the client got an answer')
  t.equal(later.status, 503, 'Retry-After: 1 s does not fit in a 400 ms deadline: the 503 is relayed')
  t.ok(later.headersAt < 400, `relayed after ${later.headersAt} ms, before the deadline`)
  t.equal(up.seen.length, 5)

  failures.set('GET /once', 1)
  const none = await within(PROMPTLY, receive(`${url}/none/once`), 'the client got an answer')
  t.equal(none.status, 503, 'no retries unless configured (reply-from alone would retry a GET 503 ten times)')
  t.equal(up.seen.length, 6)
})

t.test('a connection failure is retried for GET when retries are configured', async (t) => {
  let connections = 0
  const raw = await rawUpstream(t, (socket) => {
    connections++
    if (connections === 1) socket.resetAndDestroy()
    else socket.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nfine!')
  })
  const { url } = await proxyApp(t, { upstream: raw, retries: 1 })
  const received = await within(PROMPTLY, receive(`${url}/x`), 'the client got an answer')
  t.equal(received.status, 200)
  t.equal(received.body, 'fine!')
  t.equal(connections, 2)
})
