// @fastify/http-proxy's `handler` option and `reply.fromParameters` used together: a handler that
// maps the request itself (`reply.fromParameters(request.url)`) and sends it with
// `reply.from(url, options)`, and a preHandler that asks for the mapping more than once before the
// route's own handler runs. Either way one client request is one upstream request, and a client
// that leaves cancels it, as for a request the proxy sends itself.
import t, { type Test } from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ProxyOptions } from '../../plugins/proxy/index.js'
import { proxyApp, receive, upstream, type Upstream } from '../helpers/proxy-servers.js'
import { PROMPTLY, within } from '../helpers/bounded.js'

/**
 * '/held...' gets a first chunk and then nothing (the response stays open), '/silent...' not even
 * a head; anything else is answered with the URL the upstream saw.
 */
async function origin (t: Test): Promise<Upstream> {
  return await upstream(t, (req, res) => {
    req.resume()
    if (req.url?.startsWith('/silent') === true) return
    if (req.url?.startsWith('/held') === true) {
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('first chunk\n')
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end(`seen ${req.url ?? ''}`)
  })
}

/** The `handler` as @fastify/http-proxy users write it with fromParameters. */
function viaFromParameters (request: FastifyRequest, reply: FastifyReply): unknown {
  const { url, options } = reply.fromParameters(request.url)
  return reply.from(url, options)
}

/** A preHandler that asks for the mapping twice and lets the route's handler send the request. */
function mappingTwice (request: FastifyRequest, reply: FastifyReply, done: () => void): void {
  reply.fromParameters(request.url)
  reply.fromParameters(request.url)
  done()
}

/** One request answered in full; then a second one, after which a duplicate of the first would have shown up. */
async function oneAnswered (t: Test, up: Upstream, url: string): Promise<void> {
  const received = await within(PROMPTLY, receive(`${url}/x?q=1`), 'the client got an answer to /x?q=1')
  t.equal(received.status, 200, 'the client got a 200')
  t.equal(received.body, 'seen /x?q=1', 'the upstream\'s answer, for the path and query the client asked')
  const barrier = await within(PROMPTLY, receive(`${url}/next`), 'the client got an answer to /next')
  t.equal(barrier.body, 'seen /next')
  t.same(up.seen.map(r => r.url), ['/x?q=1', '/next'], 'one upstream request per client request')
}

/** Asks for '/silent' and leaves before any answer; the upstream request must be aborted. */
async function leavesBeforeHeaders (t: Test, up: Upstream, url: string): Promise<void> {
  const before = up.seen.length
  const arrived = once(up.server, 'request') as Promise<[http.IncomingMessage, http.ServerResponse]>
  const client = http.get(`${url}/silent`, { agent: false })
  client.on('error', () => {})
  const [, upstreamRes] = await within(PROMPTLY, arrived, 'the upstream got the request')
  client.destroy()
  if (!upstreamRes.closed) {
    await within(PROMPTLY, once(upstreamRes, 'close'), 'the client leaving before the head aborted the upstream request')
  }
  t.notOk(upstreamRes.writableFinished, 'the upstream request was aborted before its head')
  t.same(up.seen.slice(before).map(r => r.url), ['/silent'], 'one upstream request for the client that left')
}

/** Opens '/held', reads the first chunk, leaves; the upstream request must be aborted. */
async function leaves (t: Test, up: Upstream, url: string): Promise<void> {
  const before = up.seen.length
  const arrived = once(up.server, 'request') as Promise<[http.IncomingMessage, http.ServerResponse]>
  const client = http.get(`${url}/held`, { agent: false })
  client.on('error', () => {})
  const [response] = await within(PROMPTLY, once(client, 'response'), 'the client got the response head') as [http.IncomingMessage]
  response.on('error', () => {})
  const [first] = await within(PROMPTLY, once(response, 'data'), 'the client got the first chunk') as [Buffer]
  t.equal(first.toString(), 'first chunk\n', 'the client got the upstream\'s first chunk')
  const [, upstreamRes] = await within(PROMPTLY, arrived, 'the upstream got the request')
  client.destroy()
  if (!upstreamRes.closed) {
    await within(PROMPTLY, once(upstreamRes, 'close'), 'the client leaving aborted the upstream request (its response closed)')
  }
  t.notOk(upstreamRes.writableFinished, 'the upstream response was cut, not finished')
  t.same(up.seen.slice(before).map(r => r.url), ['/held'], 'one upstream request for the client that left')
}

for (const withDeadline of [false, true]) {
  const label = withDeadline ? 'with the deadline plugin' : 'without the deadline plugin'
  const extra = withDeadline ? { deadline: { timeout: 30_000 } } : {}

  t.test(`handler calling reply.fromParameters(request.url), then reply.from: one upstream request (${label})`, async (t) => {
    const up = await origin(t)
    const { url } = await proxyApp(t, { upstream: up.url, handler: viaFromParameters } satisfies ProxyOptions, extra)
    await oneAnswered(t, up, url)
  })

  t.test(`handler calling reply.fromParameters(request.url), then reply.from: a client that leaves cancels the upstream (${label})`, async (t) => {
    const up = await origin(t)
    const { url } = await proxyApp(t, { upstream: up.url, handler: viaFromParameters }, extra)
    await leaves(t, up, url)
    await leavesBeforeHeaders(t, up, url)
  })

  t.test(`preHandler calling reply.fromParameters twice, then the route's handler: one upstream request (${label})`, async (t) => {
    const up = await origin(t)
    const { url } = await proxyApp(t, { upstream: up.url, preHandler: mappingTwice }, extra)
    await oneAnswered(t, up, url)
    await leaves(t, up, url)
    await leavesBeforeHeaders(t, up, url)
  })
}
