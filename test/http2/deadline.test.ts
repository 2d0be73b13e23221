// The deadline plugin over HTTP/2 (TLS with HTTP/1.1 fallback, and h2c): a client's cancel is
// seen, the idle clock watches one stream (not the session), and nothing sends `Connection`.
import Fastify, { type FastifyInstance } from 'fastify'
import http2 from 'node:http2'
import { EventEmitter, once } from 'node:events'
import t, { type Test } from 'tap'
import deadline, { type DeadlineOptions } from '../../plugins/deadline/index.js'
import { port } from '../helpers/proxy-servers.js'
import { aborted } from '../helpers/deadline-app.js'
import { H2_MODES, h2Request, h2ServerOptions, h2Session, h2Until, type H2Mode } from '../helpers/h2.js'
import { ANSWERED, PROMPTLY, within } from '../helpers/bounded.js'

async function h2App (t: Test, mode: H2Mode, options: DeadlineOptions, routes: (app: FastifyInstance) => void): Promise<http2.ClientHttp2Session> {
  // Fastify's types pick the server kind from literal options; these tests only need the routes.
  const app = Fastify({ logger: false, ...h2ServerOptions(t, mode) }) as unknown as FastifyInstance
  await app.register(deadline, options)
  routes(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return await h2Session(t, mode, port(app.server))
}

/** Collects process warnings for the test (an UnsupportedWarning means a forbidden h2 header was set). */
function warnings (t: Test): Error[] {
  const seen: Error[] = []
  const onWarning = (warning: Error): void => { seen.push(warning) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  return seen
}

for (const mode of H2_MODES) {
  t.test(`${mode}: a client that resets its stream aborts the signal, before and after headers, on any route`, async (t) => {
    const signals = new Map<string, AbortSignal>()
    const arrivals = new EventEmitter()
    const session = await h2App(t, mode, { timeout: 10_000, streamIdleTimeout: 10_000 }, (app) => {
      app.get('/wait', (req) => {
        signals.set('/wait', req.deadline.signal)
        arrivals.emit('/wait')
        return new Promise(() => {})
      })
      app.get('/sse', (req, reply) => {
        signals.set('/sse', req.deadline.signal)
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
        reply.raw.write('data: one\n\n')
        reply.hijack()
      })
    })
    for (const [path, text] of [['/wait', null], ['/sse', 'data: one']] as const) {
      const arrived = once(arrivals, path)
      const { stream } = h2Request(session, path)
      if (text === null) await within(PROMPTLY, arrived, `${path}: the handler got the request`)
      else await within(PROMPTLY, h2Until(stream, text), `${path}: the client got ${JSON.stringify(text)}`)
      const start = Date.now()
      stream.close(http2.constants.NGHTTP2_CANCEL)
      const reason = await Promise.race([aborted(signals.get(path) as AbortSignal), failAfter(5000, `${path}: the signal never aborted`)]) as { code?: string }
      t.equal(reason.code, 'FST_STREAMLINE_CLIENT_DISCONNECTED', `${path}: aborted as a disconnect`)
      t.ok(Date.now() - start < 1000, `${path}: ${Date.now() - start} ms after the RST_STREAM`)
    }
  })

  t.test(`${mode}: the idle clock watches the stream, not the session's shared socket`, async (t) => {
    const session = await h2App(t, mode, { timeout: 5000, streamIdleTimeout: 600 }, (app) => {
      app.get('/flowing', (_req, reply) => {
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
        let i = 0
        const timer = setInterval(() => reply.raw.write(`data: ${i++}\n\n`), 50)
        reply.raw.on('close', () => clearInterval(timer))
        reply.hijack()
      })
      app.get('/stalled', (_req, reply) => {
        reply.raw.writeHead(200, { 'content-type': 'text/event-stream' })
        reply.raw.write('data: only\n\n')
        reply.hijack()
      })
    })
    const flowing = h2Request(session, '/flowing')
    await within(PROMPTLY, h2Until(flowing.stream, 'data: 1\n\n'), 'the first event')
    const start = Date.now()
    const stalled = await within(ANSWERED, h2Request(session, '/stalled').done, 'the HTTP/2 answer')
    const took = Date.now() - start
    t.equal(stalled.status, 200)
    t.equal(stalled.body, 'data: only\n\n', 'the stalled stream got its event')
    t.equal(stalled.ending, 'end', 'an event stream ends cleanly at the idle timeout')
    t.ok(took >= 550 && took < 3000, `stalled stream ended after ${took} ms (idle 600 ms) while another stream flowed`)
    t.notOk(flowing.stream.closed, 'the flowing stream on the same session is still open')
    flowing.stream.close()
  })

  t.test(`${mode}: a 504 and a cut send no Connection header (no UnsupportedWarning)`, async (t) => {
    const seen = warnings(t)
    const session = await h2App(t, mode, { timeout: 300, streamIdleTimeout: 400 }, (app) => {
      app.get('/slow', () => new Promise(() => {}))
      app.post('/upload', () => new Promise(() => {}))
      app.get('/download', (_req, reply) => {
        reply.raw.writeHead(200, { 'content-type': 'application/octet-stream' })
        reply.raw.write('partial')
        reply.hijack()
      })
    })
    const slow = await within(ANSWERED, h2Request(session, '/slow').done, 'the HTTP/2 answer')
    t.equal(slow.status, 504)
    t.equal(JSON.parse(slow.body).code, 'FST_STREAMLINE_DEADLINE_EXCEEDED')
    t.equal(slow.headers.connection, undefined)

    // The body never ends: the 504 comes, then the stream alone is reset without an error.
    const upload = h2Request(session, '/upload', 'POST', 'part of a body')
    const uploaded = await within(PROMPTLY, upload.done, 'the 504 and the stream\'s close for the unfinished upload')
    t.equal(uploaded.status, 504, 'an unfinished upload gets its 504')
    t.equal(uploaded.rstCode, http2.constants.NGHTTP2_NO_ERROR, 'then the stream is closed with NO_ERROR')

    const download = await within(ANSWERED, h2Request(session, '/download').done, 'the HTTP/2 answer')
    t.equal(download.body, 'partial')
    t.equal(download.ending, 'reset', 'a stalled download is cut: the stream is reset, never ended as complete')
    t.same(seen.map(w => `${w.name}: ${w.message}`), [], 'no warnings')
    const after = await within(ANSWERED, h2Request(session, '/slow').done, 'the HTTP/2 answer')
    t.equal(after.status, 504, 'the session still serves new streams after the cut')
  })
}

function failAfter (ms: number, message: string): Promise<never> {
  return new Promise((_resolve, reject) => setTimeout(() => reject(new Error(message)), ms).unref())
}
