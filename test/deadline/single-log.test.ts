// One deadline expiry on a proxied request is one `warn` line ("deadline exceeded"): what reply-from
// and Fastify report about the upstream call and the body stream that the expiry cancelled goes to
// debug. An upstream fault is one warn line too, and a client that leaves none.
import t, { type Test } from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once, EventEmitter } from 'node:events'
import { Writable } from 'node:stream'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { receiveWithin, within } from '../helpers/bounded.js'

interface Line { level: number, msg: string, reqId?: string, err?: { code?: string } }

/** A pino destination that keeps every line and tells who waits when one comes. */
function logCollector (): { stream: Writable, lines: Line[], waitFor: (test: (line: Line) => boolean) => Promise<Line> } {
  const lines: Line[] = []
  const events = new EventEmitter()
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const text of chunk.toString().split('\n')) {
        if (text === '') continue
        const line = JSON.parse(text) as Line
        lines.push(line)
        events.emit('line', line)
      }
      callback()
    }
  })
  const waitFor = async (test: (line: Line) => boolean): Promise<Line> => {
    const found = lines.find(test)
    if (found !== undefined) return found
    return await within(10_000, new Promise((resolve) => {
      const onLine = (line: Line): void => { if (test(line)) { events.off('line', onLine); resolve(line) } }
      events.on('line', onLine)
    }), () => `the awaited log line; lines so far: ${JSON.stringify(lines.map(l => l.msg))}`)
  }
  return { stream, lines, waitFor }
}

async function setup (t: Test) {
  const up = await upstream(t, (req, res) => {
    if (req.url === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: first\n\n') // then silence: the idle timer ends it
    } else if (req.url === '/download') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' })
      res.write('partial') // then silence: the idle timer cuts it
    } else if (req.url === '/reset') {
      req.socket.resetAndDestroy()
    }
    // '/silent' and '/leave': never answer
  })
  const log = logCollector()
  const { url } = await proxyApp(t, { upstream: up.url }, {
    deadline: { timeout: 300, streamIdleTimeout: 400 },
    fastify: { logger: { level: 'debug', stream: log.stream } }
  })
  return { up, log, url }
}

/** The request id of the request the upstream saw as `path` (from the ingress's 'incoming request' line). */
async function reqIdOf (log: ReturnType<typeof logCollector>, path: string): Promise<string> {
  const line = await log.waitFor(l => l.msg === 'incoming request' && (l as { req?: { url?: string } }).req?.url === path)
  return line.reqId ?? ''
}

async function closed (socket: net.Socket): Promise<void> {
  if (!socket.closed) await within(10_000, once(socket, 'close'), 'the close of the upstream connection')
}

function warnings (log: ReturnType<typeof logCollector>, reqId: string): string[] {
  return log.lines.filter(l => l.reqId === reqId && l.level >= 40).map(l => l.msg)
}

t.test('a proxied request expiring before the upstream answers: the 504, one warn line', async (t) => {
  const { up, log, url } = await setup(t)
  const res = await receiveWithin(`${url}/silent`)
  t.equal(res.status, 504)
  t.equal(JSON.parse(res.body).code, 'FST_STREAMLINE_DEADLINE_EXCEEDED')
  const id = await reqIdOf(log, '/silent')
  // reply-from reports the cancelled call after the 504; wait for that line, at whatever level.
  const replyFrom = await log.waitFor(l => l.reqId === id && l.msg === 'response errored')
  t.equal(replyFrom.level, 20, 'reply-from\'s line about the cancelled call is debug')
  t.same(warnings(log, id), ['deadline exceeded'], 'one warn line for one expiry')
  t.equal(up.seen.length, 1)
  await closed(up.seen[0].socket)
  t.ok(up.seen[0].socket.closed, 'the upstream call was cancelled: its connection closed')
  t.equal(up.seen[0].url, '/silent', 'the call the upstream saw was the expired one')
})

for (const [path, ending] of [['/sse', 'end'], ['/download', 'cut']] as const) {
  t.test(`a proxied ${path.slice(1)} going idle: ${ending === 'end' ? 'a clean end' : 'a cut'}, one warn line`, async (t) => {
    const { up, log, url } = await setup(t)
    const res = await receiveWithin(`${url}${path}`)
    t.equal(res.status, 200)
    t.equal(res.ending, ending)
    t.equal(res.body, path === '/sse' ? 'data: first\n\n' : 'partial', 'what the upstream sent before going quiet')
    const id = await reqIdOf(log, path)
    if (ending === 'cut') {
      // Fastify reports the body stream the expiry cancelled; wait for that line, at whatever level.
      const streamLine = await log.waitFor(l => l.reqId === id && l.msg === 'response terminated with an error with headers already sent')
      t.equal(streamLine.level, 20, 'Fastify\'s line about the cancelled body stream is debug')
    }
    t.equal(up.seen.length, 1)
    await closed(up.seen[0].socket)
    // An event stream ends before its upstream call is cancelled: whatever that reports comes
    // with the upstream connection's close, handled by the next turn of the event loop.
    await new Promise(resolve => setImmediate(resolve))
    t.same(warnings(log, id), ['deadline exceeded'], 'one warn line for one expiry')
  })
}

t.test('an upstream fault is one warn line; a client that leaves is none', async (t) => {
  const { up, log, url } = await setup(t)
  const reset = await receiveWithin(`${url}/reset`)
  t.equal(reset.status, 502)
  t.equal(JSON.parse(reset.body).code, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE')
  const resetId = await reqIdOf(log, '/reset')
  await log.waitFor(l => l.reqId === resetId && l.msg === 'response errored')
  t.same(warnings(log, resetId), ['upstream request failed'], 'our line, with the code the client got')

  const client = net.connect(Number(new URL(url).port), '127.0.0.1')
  client.write('GET /leave HTTP/1.1\r\nhost: x\r\n\r\n')
  const [req] = await within(10_000, once(up.server, 'request'), 'the /leave request at the upstream') as [http.IncomingMessage]
  client.destroy()
  await closed(req.socket)
  const leaveId = await reqIdOf(log, '/leave')
  await log.waitFor(l => l.reqId === leaveId && l.msg === 'client disconnected; upstream request aborted')
  t.same(warnings(log, leaveId), [], 'a client leaving is not a warning')
  t.equal(up.seen.length, 2)

  const alive = await receiveWithin(`${url}/silent`)
  t.equal(alive.status, 504, 'the process is alive')
})
