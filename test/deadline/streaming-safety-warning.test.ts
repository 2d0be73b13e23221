// Streaming-safety warnings: a streaming route (the deadline's streaming mode, a proxy route)
// behind an onSend hook that rewrites or buffers its body is named once in the log, with the hook.
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import compress from '@fastify/compress'
import { PassThrough, Readable, Transform } from 'node:stream'
import { gunzipSync } from 'node:zlib'
import deadline from '../../plugins/deadline/index.js'
import { proxyApp, upstream, port } from '../helpers/proxy-servers.js'
import { Stream } from '../helpers/stream-client.js'
import { receiveWithin, within } from '../helpers/bounded.js'

interface LogLine { level: number, msg: string, route?: string, onSend?: string[] }

/** A logger at warn level whose lines the test reads. */
function capturedLogger (): { lines: LogLine[], logger: { level: string, stream: { write: (line: string) => void } } } {
  const lines: LogLine[] = []
  return { lines, logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line) as LogLine) } } } }
}

function warningsFor (lines: LogLine[], route: string): LogLine[] {
  return lines.filter(line => line.level === 40 && line.route === route)
}

/** Replaces a stream payload with an upper-cased copy: still a stream, but not the route's. */
async function rewriteBody (_request: FastifyRequest, _reply: FastifyReply, payload: unknown): Promise<unknown> {
  if (typeof (payload as Readable | null)?.pipe !== 'function') return payload
  return (payload as Readable).pipe(new Transform({ transform (chunk: Buffer, _encoding, done) { done(null, String(chunk).toUpperCase()) } }))
}

/** Harmless: sets a header, hands the payload on unchanged. */
async function addHeader (_request: FastifyRequest, reply: FastifyReply, payload: unknown): Promise<unknown> {
  reply.header('x-seen', 'yes')
  return payload
}

/** Buffers a stream payload whole, and sends it as a string. */
async function collectBody (_request: FastifyRequest, _reply: FastifyReply, payload: unknown): Promise<unknown> {
  if (typeof (payload as Readable | null)?.pipe !== 'function') return payload
  let text = ''
  for await (const chunk of payload as Readable) text += String(chunk)
  return text
}

const STREAMING = { config: { deadline: { streaming: true } } }

/** An event-stream route whose handler sends a stream; `open` holds each response's stream for the test. */
function eventRoute (app: FastifyInstance, url: string, open: PassThrough[], endAtOnce = false): void {
  app.get(url, STREAMING, async (_request, reply) => {
    const body = new PassThrough()
    reply.type('text/event-stream')
    body.write('data: 1\n\n')
    if (endAtOnce) body.end()
    else open.push(body)
    return body
  })
}

async function inAppServer (t: Test, lines: { logger: object }): Promise<{ url: string, open: PassThrough[] }> {
  const open: PassThrough[] = []
  const app = Fastify({ logger: lines.logger })
  await app.register(deadline, { streamIdleTimeout: 10_000 })
  await app.register(async (scope) => {
    scope.addHook('onSend', rewriteBody)
    eventRoute(scope, '/rewritten', open)
    // Not a streaming route (a stream body, but no streaming mode): a rewrite there is the app's business.
    scope.get('/plain', async () => Readable.from(['plain']))
  })
  await app.register(async (scope) => {
    scope.addHook('onSend', addHeader)
    eventRoute(scope, '/harmless', open)
  })
  await app.register(async (scope) => {
    scope.addHook('onSend', collectBody)
    eventRoute(scope, '/collected', open, true)
  })
  await app.register(async (scope) => {
    // Compresses every text/ type, text/event-stream included.
    await scope.register(compress, { threshold: 0, customTypes: /^text\// })
    eventRoute(scope, '/compressed', open, true)
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { app.server.closeAllConnections(); await app.close() })
  return { url: `http://127.0.0.1:${port(app.server)}`, open }
}

/** Two SSE responses from `path`: each gets its first event while the stream is open, then the second, then the end. */
async function twoStreams (t: Test, url: string, path: string, open: PassThrough[], first: string, second: string): Promise<void> {
  for (let i = 0; i < 2; i++) {
    const client = new Stream(`${url}${path}`)
    await within(5000, client.until(body => body.includes(first)), `the first event of ${path}`)
    open.shift()?.end('data: 2\n\n')
    t.equal(await within(5000, client.done, `the end of ${path}`), 'end')
    t.equal(client.body, first + second, `${path}: the events flowed, one before the other was sent`)
  }
}

t.test('in-app streaming routes: a payload-replacing onSend hook is named once; a harmless one is not', async (t) => {
  const captured = capturedLogger()
  const { url, open } = await inAppServer(t, captured)

  await twoStreams(t, url, '/rewritten', open, 'DATA: 1\n\n', 'DATA: 2\n\n')
  const rewritten = warningsFor(captured.lines, 'GET /rewritten')
  t.equal(rewritten.length, 1, 'one warning for two responses')
  t.match(rewritten[0]?.msg, /streaming route GET \/rewritten: its body is rewritten .* by onSend hook rewriteBody/)
  t.same(rewritten[0]?.onSend, ['rewriteBody'])

  await twoStreams(t, url, '/harmless', open, 'data: 1\n\n', 'data: 2\n\n')
  t.equal(warningsFor(captured.lines, 'GET /harmless').length, 0, 'no warning for a hook that passes the payload on')
  // Fastify's HEAD route reads the stream and sends no body: not a hook buffering it.
  t.equal((await receiveWithin(`${url}/harmless`, { method: 'HEAD' })).status, 200)
  open.shift()?.end()
  t.equal(warningsFor(captured.lines, 'HEAD /harmless').length, 0, 'no warning for HEAD')

  t.equal((await receiveWithin(`${url}/plain`)).body, 'PLAIN', 'the hook did rewrite the plain route')
  t.equal(warningsFor(captured.lines, 'GET /plain').length, 0, 'no warning for a route that does not stream')

  const collected = await receiveWithin(`${url}/collected`)
  t.equal(collected.body, 'data: 1\n\n', 'the buffering hook sent the whole body at the end')
  t.match(warningsFor(captured.lines, 'GET /collected')[0]?.msg, /its body is buffered.* by onSend hook collectBody/)

  const compressed = await receiveWithin(`${url}/compressed`, { headers: { 'accept-encoding': 'gzip' } })
  t.equal(compressed.headers['content-encoding'], 'gzip')
  t.equal(gunzipSync(Buffer.from(compressed.body, 'latin1')).toString(), 'data: 1\n\n', 'the events arrive, compressed')
  t.match(warningsFor(captured.lines, 'GET /compressed')[0]?.msg, /by compression \(Content-Encoding: gzip; exempt text\/event-stream/)

  t.equal(captured.lines.filter(line => line.level === 40).length, 3, 'no other warning')
  t.equal((await receiveWithin(`${url}/harmless-not-there`)).status, 404, 'the process is alive')
})

t.test('a streaming route that writes on reply.raw is left alone after a few responses', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(deadline, { streamIdleTimeout: 10_000 })
  const wrapped: boolean[] = []
  app.get('/hijacked', STREAMING, (_request, reply) => {
    // A wrapper watching reply.send is an own property of this reply.
    wrapped.push(Object.hasOwn(reply, 'send'))
    reply.hijack()
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
    reply.raw.end('data: raw\n\n')
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { app.server.closeAllConnections(); await app.close() })
  for (let i = 0; i < 20; i++) t.equal((await receiveWithin(`http://127.0.0.1:${port(app.server)}/hijacked`)).body, 'data: raw\n\n')
  t.equal(wrapped[0], true, 'its first responses are watched')
  t.equal(wrapped.at(-1), false, 'no longer once it never sent a stream for a while')
})

t.test('proxy routes: a payload-replacing onSend hook of the app is named once; a harmless one is not', async (t) => {
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.end('data: up\n\n')
  })
  const captured = capturedLogger()
  const { url } = await proxyApp(t, [{ upstream: up.url, prefix: '/rewritten' }, { upstream: up.url, prefix: '/harmless' }], {
    fastify: { logger: captured.logger },
    before: async (app) => {
      app.addHook('onSend', async function rewriteProxied (request: FastifyRequest, reply: FastifyReply, payload: unknown) {
        return request.url.startsWith('/rewritten') ? await rewriteBody(request, reply, payload) : await addHeader(request, reply, payload)
      })
    }
  })
  for (let i = 0; i < 2; i++) {
    const rewritten = await receiveWithin(`${url}/rewritten/events`)
    t.equal(rewritten.body, 'DATA: UP\n\n', 'the rewritten body still arrives')
    const harmless = await receiveWithin(`${url}/harmless/events`)
    t.equal(harmless.body, 'data: up\n\n', 'the body as the upstream sent it')
    t.equal(harmless.headers['x-seen'], 'yes')
  }
  t.equal(up.seen.length, 4, 'the upstream saw every request')
  t.equal(up.seen[0]?.url, '/events')
  const warnings = captured.lines.filter(line => line.level === 40)
  t.equal(warnings.length, 1, 'one warning, for the rewritten registration only')
  t.equal(warnings[0]?.route, 'GET /rewritten/*')
  t.match(warnings[0]?.msg, /by onSend hook rewriteProxied/)
  t.equal((await receiveWithin(`${url}/harmless/alive`)).status, 200, 'the process is alive')
})
