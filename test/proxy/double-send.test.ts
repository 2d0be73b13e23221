// An async hook that sends (`reply.from`) without returning the reply: Fastify then runs the
// route's handler as well, and the proxy's handler sends again. One client request must still be
// one upstream request, cancelled when the client leaves or the deadline passes, with one warning
// that names the fix; and a `reply.from` made without the proxy's options is cancelled too.
import t, { type Test } from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { ProxyOptions } from '../../plugins/proxy/index.js'
import { proxyApp, receive, upstream, type Upstream } from '../helpers/proxy-servers.js'
import { PROMPTLY, until, within } from '../helpers/bounded.js'

interface LogLine { level: number, msg: string, reqId?: string }

/** A warn-level logger whose lines the test reads. */
function capturedLogger (): { lines: LogLine[], logger: { level: string, stream: { write: (line: string) => void } } } {
  const lines: LogLine[] = []
  return { lines, logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } } } }
}

const doubleSendWarnings = (lines: LogLine[]): LogLine[] => lines.filter(l => l.level === 40 && /return the reply/.test(l.msg))

/**
 * '/held...' gets a head and a first chunk, then nothing (the response stays open); '/silent...'
 * not even a head; anything else is answered with the URL the upstream saw. Each request's
 * response is kept, to see it closed.
 */
async function origin (t: Test): Promise<Upstream & { responses: http.ServerResponse[] }> {
  const responses: http.ServerResponse[] = []
  const up = await upstream(t, (req, res) => {
    responses.push(res)
    req.resume()
    if (req.url?.startsWith('/silent') === true) return
    res.writeHead(200, { 'content-type': 'text/plain' })
    if (req.url?.startsWith('/held') === true) res.write('first chunk\n')
    else res.end(`seen ${req.url ?? ''}`)
  })
  return { ...up, responses }
}

type Hook = (request: FastifyRequest, reply: FastifyReply) => Promise<void>

/** A hook that sends with reply-from's own options (none) and returns nothing: Fastify goes on to the proxy's handler. */
const plainSend = (upstreamUrl: string): Hook => async (request, reply) => { reply.from(upstreamUrl + request.url) }

/** The hooks under test, each given the upstream's URL; none returns the reply. */
const HOOKS: Record<string, (upstreamUrl: string) => Hook> = {
  'reply.from(url), without the proxy\'s options': plainSend,
  'reply.from with reply.fromParameters\' options': () => async (request, reply) => {
    const { url, options } = reply.fromParameters(request.url)
    reply.from(url, options)
  }
}

/** Every upstream response from `from` on closed unfinished: its request was cancelled. */
async function allCancelled (t: Test, up: { responses: http.ServerResponse[] }, from: number, what: string): Promise<void> {
  const responses = up.responses.slice(from)
  await until(PROMPTLY, () => responses.every(r => r.closed), `${what}: every upstream request was cancelled (${responses.filter(r => r.closed).length} of ${responses.length} closed)`)
  for (const res of responses) t.notOk(res.writableFinished, `${what}: the upstream response was cut, not finished`)
}

/** Asks for '/silent' and leaves once the upstream has the request, before any head. */
async function leavesBeforeHeaders (t: Test, up: Upstream & { responses: http.ServerResponse[] }, url: string, what: string): Promise<void> {
  const before = up.seen.length
  const arrived = once(up.server, 'request')
  const client = http.get(`${url}/silent`, { agent: false })
  client.on('error', () => {})
  await within(PROMPTLY, arrived, `${what}: the upstream got the request`)
  client.destroy()
  await allCancelled(t, up, before, `${what}, client left before the head`)
  t.equal((await within(PROMPTLY, receive(`${url}/barrier`), `${what}: an answer to /barrier`)).body, 'seen /barrier')
  t.same(up.seen.slice(before).map(r => r.url), ['/silent', '/barrier'], `${what}: one upstream request per client request`)
}

/** Opens '/held', reads the first chunk, leaves; then checks what the upstream saw. */
async function leavesMidResponse (t: Test, up: Upstream & { responses: http.ServerResponse[] }, url: string, what: string): Promise<void> {
  const before = up.seen.length
  const client = http.get(`${url}/held`, { agent: false })
  client.on('error', () => {})
  const [response] = await within(PROMPTLY, once(client, 'response'), `${what}: the client got the response head`) as [http.IncomingMessage]
  response.on('error', () => {})
  const [first] = await within(PROMPTLY, once(response, 'data'), `${what}: the client got the first chunk`) as [Buffer]
  t.equal(first.toString(), 'first chunk\n', `${what}: the client got the upstream's first chunk`)
  client.destroy()
  await allCancelled(t, up, before, `${what}, client left mid-response`)
  // A request made after the client left (one not tied to it) would arrive before this one.
  t.equal((await within(PROMPTLY, receive(`${url}/barrier`), `${what}: an answer to /barrier`)).body, 'seen /barrier')
  t.same(up.seen.slice(before).map(r => r.url), ['/held', '/barrier'], `${what}: one upstream request per client request`)
}

/** One request answered in full, by one upstream request, and one warning naming the fix. */
async function answeredOnce (t: Test, up: Upstream, url: string, lines: LogLine[], what: string): Promise<void> {
  const before = up.seen.length
  const warned = doubleSendWarnings(lines).length
  const received = await within(PROMPTLY, receive(`${url}/x?q=1`), `${what}: an answer to /x?q=1`)
  t.equal(received.status, 200, `${what}: the client got a 200`)
  t.equal(received.body, 'seen /x?q=1', `${what}: the upstream's answer, once`)
  t.equal(received.ending, 'end', `${what}: the answer ended normally`)
  const barrier = await within(PROMPTLY, receive(`${url}/barrier`), `${what}: an answer to /barrier`)
  t.equal(barrier.body, 'seen /barrier')
  t.same(up.seen.slice(before).map(r => r.url), ['/x?q=1', '/barrier'], `${what}: one upstream request per client request`)
  const warnings = doubleSendWarnings(lines).slice(warned)
  t.equal(warnings.length, 2, `${what}: one warning per client request (two requests)`)
  t.not(warnings[0]?.reqId, warnings[1]?.reqId, `${what}: each request's warning carries its own reqId`)
  t.match(warnings[0]?.msg, /reply\.from/, `${what}: the warning names reply.from`)
}

for (const where of ['registration', 'app'] as const) {
  for (const [label, makeHook] of Object.entries(HOOKS)) {
    const title = `${where === 'registration' ? 'the proxy\'s preHandler option' : 'the app\'s own preHandler (addHook)'}: ${label}, not returned`
    t.test(title, async (t) => {
      const up = await origin(t)
      const hook = makeHook(up.url)
      const { lines, logger } = capturedLogger()
      const options: ProxyOptions = where === 'registration' ? { upstream: up.url, preHandler: hook } : { upstream: up.url }
      const before = where === 'app' ? (app: FastifyInstance): void => { app.addHook('preHandler', hook) } : undefined
      const { url } = await proxyApp(t, options, { fastify: { logger }, before })
      await answeredOnce(t, up, url, lines, title)
      await leavesBeforeHeaders(t, up, url, title)
      await leavesMidResponse(t, up, url, title)
    })
  }
}

t.test('a hook\'s reply.from(url) without the proxy\'s options is cancelled by the deadline, with the proxy\'s handler\'s send', async (t) => {
  const up = await origin(t)
  const { lines, logger } = capturedLogger()
  const { url } = await proxyApp(t, { upstream: up.url, preHandler: plainSend(up.url) },
    { fastify: { logger }, deadline: { timeout: 300 } })
  const received = await within(PROMPTLY, receive(`${url}/silent`), 'the client got the deadline\'s answer')
  t.equal(received.status, 504)
  t.equal(JSON.parse(received.body).code, 'FST_STREAMLINE_DEADLINE_EXCEEDED')
  await allCancelled(t, up, 0, 'deadline before headers')
  t.same(up.seen.map(r => r.url), ['/silent'], 'one upstream request')
  t.equal(doubleSendWarnings(lines).length, 1, 'one warning')
})

t.test('a hook\'s reply.from(url) without the proxy\'s options, returned: cancelled with the client (Fastify still runs the handler after a cut reply: nothing sent), no warning', async (t) => {
  const up = await origin(t)
  const { lines, logger } = capturedLogger()
  const { url } = await proxyApp(t, {
    upstream: up.url,
    preHandler: async (request, reply) => { return reply.from(up.url + request.url) }
  }, { fastify: { logger } })
  await leavesBeforeHeaders(t, up, url, 'returned hook')
  await leavesMidResponse(t, up, url, 'returned hook')
  t.same(doubleSendWarnings(lines), [], 'no warning: the hook returned the reply')
})

t.test('a send after the reply was sent is refused: no upstream request, one warning', async (t) => {
  const up = await origin(t)
  const { lines, logger } = capturedLogger()
  const { url } = await proxyApp(t, {
    upstream: up.url,
    handler: (_request, reply, dest, options) => {
      reply.code(200).send('local answer')
      return reply.from(dest, options)
    }
  }, { fastify: { logger } })
  const received = await within(PROMPTLY, receive(`${url}/x`), 'an answer to /x')
  t.equal(received.body, 'local answer')
  t.same(up.seen.map(r => r.url), [], 'no upstream request')
  t.equal(doubleSendWarnings(lines).length, 1, 'one warning')
})

t.test('a send from onError after the upstream failed is not a double send: the fallback answers', async (t) => {
  const down = await upstream(t, (req) => { req.socket.destroy() })
  const fallback = await origin(t)
  const { lines, logger } = capturedLogger()
  const { url } = await proxyApp(t, {
    upstream: down.url,
    replyOptions: {
      onError (reply) { reply.from(`${fallback.url}/fallback`) }
    }
  }, { fastify: { logger } })
  const received = await within(PROMPTLY, receive(`${url}/x`), 'an answer to /x')
  t.equal(received.status, 200)
  t.equal(received.body, 'seen /fallback')
  t.same(down.seen.map(r => r.url), ['/x'])
  t.same(fallback.seen.map(r => r.url), ['/fallback'])
  t.same(doubleSendWarnings(lines), [], 'no warning')
})
