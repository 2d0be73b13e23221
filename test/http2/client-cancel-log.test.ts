// A client that cancels a proxied stream (a browser closing a tab with an EventSource) is
// ordinary: over HTTP/2 (RST_STREAM CANCEL) as over HTTP/1.1 (the connection closed), it logs
// nothing at warn or above, and at most one line about the cancel. Any client could otherwise
// write warn lines at will.
import type { FastifyServerOptions } from 'fastify'
import http from 'node:http'
import http2 from 'node:http2'
import { once } from 'node:events'
import t, { type Test } from 'tap'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { H2_MODES, h2Request, h2ServerOptions, h2Session, h2Until, type H2Mode } from '../helpers/h2.js'
import { within } from '../helpers/bounded.js'

interface LogLine { level: number, msg: string }

/** What Fastify logs when a streamed response ends, completed or cut. */
const SETTLED = /request completed|stream closed prematurely|response terminated/

function sse (_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  res.write('data: one\n\n')
}

/** The proxy (with the deadline plugin) logging at debug into `lines`. */
async function loggingProxy (t: Test, mode: H2Mode | 'http1', url: string): Promise<{ port: number, lines: LogLine[], logged: (msg: RegExp) => Promise<void> }> {
  const lines: LogLine[] = []
  const waiters: Array<() => void> = []
  const stream = { write (line: string) { lines.push(JSON.parse(line) as LogLine); for (const wake of waiters.splice(0)) wake() } }
  const server = mode === 'http1' ? {} : h2ServerOptions(t, mode)
  const { app } = await proxyApp(t, { upstream: url }, {
    deadline: { timeout: 10_000, streamIdleTimeout: 10_000 },
    fastify: { ...server, logger: { level: 'debug', stream } } as FastifyServerOptions
  })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening')
  const logged = async (msg: RegExp): Promise<void> => {
    while (!lines.some(line => msg.test(line.msg))) await new Promise<void>(resolve => waiters.push(resolve))
    // Whatever else the same end logs comes in the same turn or the next.
    await new Promise(resolve => setImmediate(resolve))
  }
  return { port: address.port, lines, logged }
}

function checkLines (t: Test, lines: LogLine[]): void {
  const loud = lines.filter(line => line.level >= 40)
  t.same(loud.map(line => line.msg), [], 'nothing at warn or above')
  const cancels = lines.filter(line => /prematurely|disconnected|aborted|terminated/.test(line.msg))
  t.ok(cancels.length <= 1, `at most one line about the cancel (got: ${JSON.stringify(cancels.map(line => line.msg))})`)
  t.ok(cancels.every(line => line.level <= 30), 'and at most at info')
}

for (const mode of H2_MODES) {
  t.test(`${mode}: a client's RST_STREAM on a proxied event stream logs no warning`, async (t) => {
    const up = await upstream(t, sse)
    const { port, lines, logged } = await loggingProxy(t, mode, up.url)
    const session = await h2Session(t, mode, port)
    const arrived = once(up.server, 'request') as Promise<[http.IncomingMessage, http.ServerResponse]>
    const { stream } = h2Request(session, '/events')
    const [, res] = await within(5000, arrived, 'the upstream request')
    await within(5000, h2Until(stream, 'data: one'), 'the first event at the client')
    stream.close(http2.constants.NGHTTP2_CANCEL)
    await within(5000, once(res, 'close'), 'the upstream request closed after the cancel')
    t.notOk(res.writableFinished, 'the upstream saw its request aborted, not finished')
    await within(5000, logged(SETTLED), 'Fastify\'s line on the response\'s end')
    checkLines(t, lines)
  })
}

t.test('http/1.1: a client that closes its connection mid-stream logs no warning', async (t) => {
  const up = await upstream(t, sse)
  const { port, lines, logged } = await loggingProxy(t, 'http1', up.url)
  const arrived = once(up.server, 'request') as Promise<[http.IncomingMessage, http.ServerResponse]>
  const req = http.get({ host: '127.0.0.1', port, path: '/events' })
  req.on('error', () => {})
  const [response] = await within(5000, once(req, 'response') as Promise<[http.IncomingMessage]>, 'the response head')
  const [, res] = await within(5000, arrived, 'the upstream request')
  await within(5000, once(response, 'data'), 'the first event at the client')
  req.destroy()
  await within(5000, once(res, 'close'), 'the upstream request closed after the client left')
  t.notOk(res.writableFinished, 'the upstream saw its request aborted, not finished')
  await within(5000, logged(SETTLED), 'Fastify\'s line on the response\'s end')
  checkLines(t, lines)
})
