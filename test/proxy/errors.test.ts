import t, { type Test } from 'tap'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { once } from 'node:events'

import { classifyUpstreamError } from '../../plugins/proxy/upstream-errors.js'
import { port, proxyApp, rawUpstream, upstream } from '../helpers/proxy-servers.js'
import { selfSignedCertificate } from '../helpers/tls.js'
import { receiveWithin } from '../helpers/bounded.js'

/** Asserts a well-formed JSON error with no stack and no upstream address in it. */
function assertErrorBody (t: Test, res: { status: number, headers: http.IncomingHttpHeaders, body: string }, status: number, code: string, upstreamUrl: string): void {
  t.equal(res.status, status)
  t.match(res.headers['content-type'], /^application\/json/)
  const body = JSON.parse(res.body)
  t.same(Object.keys(body).sort(), ['code', 'error', 'message', 'statusCode'])
  t.equal(body.statusCode, status)
  t.equal(body.code, code)
  const { hostname, port } = new URL(upstreamUrl)
  t.notMatch(res.body, hostname, 'no upstream address')
  if (port !== '') t.notMatch(res.body, `:${port}`, 'no upstream port')
}

t.test('before headers: refused 502, DNS failure 502, reset 502, malformed 502, slow head 504, never 500', async (t) => {
  const closed = net.createServer().listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const closedUrl = `http://127.0.0.1:${port(closed)}`
  closed.close()

  const raw = await rawUpstream(t, (socket, head) => {
    const path = head.split(' ')[1]
    if (path === '/reset') socket.resetAndDestroy()
    else if (path === '/bad-status') socket.end('HTTP/1.1 abc Nope\r\n\r\n')
    else if (path === '/bad-header') socket.end('HTTP/1.1 200 OK\r\nx-bad: a\x01b\r\ncontent-length: 0\r\n\r\n')
    else if (path === '/status-999') socket.end('HTTP/1.1 999 Odd\r\ncontent-length: 2\r\n\r\nhi')
    else if (path === '/garbage') socket.end('not http at all\r\n\r\n')
    // '/silent': never answers
  })
  const { url } = await proxyApp(t, [
    { upstream: closedUrl, prefix: '/refused' },
    // .invalid never resolves (RFC 2606); the connect timeout bounds a slow resolver.
    { upstream: 'http://upstream.invalid', prefix: '/dns', connectTimeout: 5000 },
    { upstream: raw, prefix: '/raw' },
    { upstream: raw, prefix: '/slow', headersTimeout: 300 }
  ])

  assertErrorBody(t, await receiveWithin(`${url}/refused/x`), 502, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE', closedUrl)
  assertErrorBody(t, await receiveWithin(`${url}/dns/x`), 502, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE', 'http://upstream.invalid')
  assertErrorBody(t, await receiveWithin(`${url}/raw/reset`), 502, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE', raw)
  assertErrorBody(t, await receiveWithin(`${url}/raw/bad-status`), 502, 'FST_STREAMLINE_UPSTREAM_BAD_RESPONSE', raw)
  assertErrorBody(t, await receiveWithin(`${url}/raw/bad-header`), 502, 'FST_STREAMLINE_UPSTREAM_BAD_RESPONSE', raw)
  assertErrorBody(t, await receiveWithin(`${url}/raw/status-999`), 502, 'FST_STREAMLINE_UPSTREAM_BAD_RESPONSE', raw)
  assertErrorBody(t, await receiveWithin(`${url}/raw/garbage`), 502, 'FST_STREAMLINE_UPSTREAM_BAD_RESPONSE', raw)
  const slow = await receiveWithin(`${url}/slow/silent`)
  assertErrorBody(t, slow, 504, 'FST_STREAMLINE_UPSTREAM_TIMEOUT', raw)
  t.ok(slow.headersAt >= 250 && slow.headersAt < 2000, `504 after ${slow.headersAt} ms (headersTimeout 300)`)
})

t.test('error classification covers DNS and TLS failures', async (t) => {
  const withCode = (code: string): Error => Object.assign(new Error('x'), { code })
  const wrapped = (code: string): Error => new Error('wrapped', { cause: withCode(code) })
  t.equal(classifyUpstreamError(wrapped('ENOTFOUND')).code, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE')
  t.equal(classifyUpstreamError(wrapped('EAI_AGAIN')).statusCode, 502)
  t.equal(classifyUpstreamError(new AggregateError([withCode('ECONNREFUSED')])).code, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE')
  t.equal(classifyUpstreamError(wrapped('UND_ERR_CONNECT_TIMEOUT')).statusCode, 504)
  t.equal(classifyUpstreamError(wrapped('CERT_HAS_EXPIRED')).code, 'FST_STREAMLINE_UPSTREAM_TLS')
  t.equal(classifyUpstreamError(new Error('unknown')).statusCode, 502, 'unknown faults are 502, never 500')
})

t.test('after headers: an upstream dying mid-body destroys the client connection', async (t) => {
  const raw = await rawUpstream(t, (socket, head) => {
    const path = head.split(' ')[1]
    if (path === '/short') {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789')
      setTimeout(() => socket.end(), 50)
    } else if (path === '/unterminated') {
      socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n')
      setTimeout(() => socket.end(), 50)
    } else if (path === '/reset') {
      socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n')
      setTimeout(() => socket.resetAndDestroy(), 50)
    }
  })
  const { url } = await proxyApp(t, { upstream: raw })
  for (const path of ['/short', '/unterminated', '/reset']) {
    const res = await receiveWithin(`${url}${path}`)
    t.equal(res.status, 200, `${path}: the head was relayed`)
    t.equal(res.body, '0123456789', `${path}: the bytes that came were relayed`)
    t.equal(res.ending, 'cut', `${path}: the client sees a broken response, never a clean end`)
    t.notOk(res.headers['transfer-encoding'] !== undefined && res.headers['content-length'] !== undefined, `${path}: never both framings`)
  }
})

t.test('upstream TLS is verified by default; turning it off or trusting a CA is explicit', async (t) => {
  const { key, cert } = selfSignedCertificate(t)
  const seen: string[] = []
  const server = https.createServer({ key, cert }, (req, res) => {
    seen.push(req.url ?? '')
    res.end('secure')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const tlsUrl = `https://127.0.0.1:${port(server)}`

  const { url } = await proxyApp(t, [
    { upstream: tlsUrl, prefix: '/default' },
    { upstream: tlsUrl, prefix: '/insecure', tls: { rejectUnauthorized: false } },
    { upstream: tlsUrl, prefix: '/trusted', tls: { ca: cert } }
  ])
  assertErrorBody(t, await receiveWithin(`${url}/default/a`), 502, 'FST_STREAMLINE_UPSTREAM_TLS', tlsUrl)
  t.same(seen, [], 'the self-signed upstream got no request by default')
  const insecure = await receiveWithin(`${url}/insecure/b`)
  t.equal(insecure.body, 'secure')
  const trusted = await receiveWithin(`${url}/trusted/c`)
  t.equal(trusted.body, 'secure')
  t.same(seen, ['/b', '/c'])
})

t.test('a function upstream returning garbage is a clear 500 configuration error', async (t) => {
  const up = await upstream(t, (_req, res) => res.end('never'))
  const { url } = await proxyApp(t, { upstream: (request) => request.headers['x-target'] === 'good' ? up.url : 'ftp://nope' })
  const bad = await receiveWithin(`${url}/x`)
  t.equal(bad.status, 500)
  t.equal(JSON.parse(bad.body).code, 'FST_STREAMLINE_PROXY_INVALID_UPSTREAM')
  const good = await receiveWithin(`${url}/x`, { headers: { 'x-target': 'good' } })
  t.equal(good.body, 'never')
  t.equal(up.seen.length, 1)
})
