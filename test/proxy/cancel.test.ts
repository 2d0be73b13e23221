import t, { type Test } from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { proxyApp, receive, upstream, type Upstream } from '../helpers/proxy-servers.js'
import { PROMPTLY, within } from '../helpers/bounded.js'

// The issue asks for the upstream side to close within 100 ms; 250 ms leaves room for a loaded machine.
const PROMPT = 250

/** Resolves with the next request the upstream gets (listener attached before the request is sent); bounded. */
async function nextUpstreamRequest (up: Upstream, what: string): Promise<[http.IncomingMessage, http.ServerResponse]> {
  const arrived = once(up.server, 'request') as Promise<[http.IncomingMessage, http.ServerResponse]>
  return await within(PROMPTLY, arrived, `${what}: the upstream got the request`)
}

/** ms from now until the upstream's response closes; asserts it closed unfinished (aborted). */
async function upstreamCloses (t: Test, res: http.ServerResponse, what: string): Promise<void> {
  const start = Date.now()
  if (!res.closed) await within(PROMPTLY, once(res, 'close'), `${what}: the upstream request was aborted (its response closed)`)
  const took = Date.now() - start
  t.notOk(res.writableFinished, `${what}: the upstream response was cut, not finished`)
  t.ok(took < PROMPT, `${what}: upstream connection closed ${took} ms after the trigger`)
}

for (const withDeadline of [false, true]) {
  const label = withDeadline ? 'with the deadline plugin' : 'without the deadline plugin'
  t.test(`client disconnect aborts the upstream (${label})`, async (t) => {
    const up = await upstream(t, (req, res) => {
      if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write('data: one\n\n')
      }
      // Nothing answers otherwise. '/upload' is read by the test itself (a 'data' listener resumes it).
      if (req.url !== '/upload') req.resume()
    })
    const { url } = await proxyApp(t, [
      { upstream: up.url },
      { upstream: up.url, prefix: '/optout', config: { deadline: false } }
    ], withDeadline ? { deadline: { timeout: 30_000 } } : {})

    // Before upstream headers.
    for (const path of ['/silent', '/optout/silent']) {
      const arrived = nextUpstreamRequest(up, path)
      const client = http.get(`${url}${path}`, { agent: false })
      client.on('error', () => {})
      const [, res] = await arrived
      client.destroy()
      await upstreamCloses(t, res, `${path} before headers`)
    }

    // Mid-upload.
    const uploadArrived = nextUpstreamRequest(up, 'mid-upload')
    const upload = http.request(`${url}/upload`, { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } })
    upload.on('error', () => {})
    upload.write('part one')
    const [uploadReq, uploadRes] = await uploadArrived
    await within(PROMPTLY, once(uploadReq, 'data'), 'the upstream got the first part of the upload')
    upload.destroy()
    await upstreamCloses(t, uploadRes, 'mid-upload')
    t.notOk(uploadReq.complete, 'the upstream never saw the upload complete')

    // Mid-stream.
    const streamArrived = nextUpstreamRequest(up, 'mid-stream')
    const stream = http.get(`${url}/stream`, { agent: false })
    stream.on('error', () => {})
    const [, streamRes] = await streamArrived
    const [clientRes] = await within(PROMPTLY, once(stream, 'response'), 'the client got the response head') as [http.IncomingMessage]
    clientRes.on('error', () => {})
    await within(PROMPTLY, once(clientRes, 'data'), 'the client got the first event')
    stream.destroy()
    await upstreamCloses(t, streamRes, 'mid-stream')
  })
}

t.test('many concurrent requests on an opted-out route leave no listener on a shared signal', async (t) => {
  const warnings: Error[] = []
  const onWarning = (warning: Error): void => { warnings.push(warning) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const pending: http.ServerResponse[] = []
  let arrivedAll = (): void => {}
  const allArrived = new Promise<void>((resolve) => { arrivedAll = resolve })
  const up = await upstream(t, (_req, res) => {
    pending.push(res)
    if (pending.length === 20) arrivedAll()
  })
  const { url } = await proxyApp(t, { upstream: up.url, config: { deadline: false } }, { deadline: { timeout: 5000 } })
  const clients = Array.from({ length: 20 }, (_, i) => receive(`${url}/${i}`))
  await within(PROMPTLY, allArrived, 'the upstream got all 20 requests')
  for (const res of pending) res.end('ok')
  const received = await within(PROMPTLY, Promise.all(clients), 'every client got its answer')
  t.same(received.map(r => r.body), Array(20).fill('ok'))
  t.same(warnings.map(w => w.name), [], 'no MaxListenersExceededWarning')
})

t.test('the deadline aborts the upstream before its headers (the client gets the deadline\'s 504)', async (t) => {
  const up = await upstream(t, () => {})
  const { url } = await proxyApp(t, { upstream: up.url }, { deadline: { timeout: 300 } })
  const arrived = nextUpstreamRequest(up, '/slow')
  const client = receive(`${url}/slow`)
  const [, res] = await arrived
  const received = await within(PROMPTLY, client, 'the client got the deadline\'s answer')
  t.equal(received.status, 504)
  t.equal(JSON.parse(received.body).code, 'FST_STREAMLINE_DEADLINE_EXCEEDED')
  t.ok(received.headersAt >= 250 && received.headersAt < 1500, `504 after ${received.headersAt} ms (timeout 300)`)
  await upstreamCloses(t, res, 'deadline before headers')
})

t.test('the deadline aborts the upstream after headers: SSE ends cleanly, other bodies are cut', async (t) => {
  const up = await upstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': req.url === '/sse' ? 'text/event-stream' : 'application/octet-stream' })
    res.write(req.url === '/sse' ? 'data: one\n\n' : 'bytes')
    // then quiet
  })
  const { url } = await proxyApp(t, { upstream: up.url }, { deadline: { timeout: 5000, streamIdleTimeout: 300 } })
  for (const [path, ending] of [['/sse', 'end'], ['/download', 'cut']] as const) {
    const arrived = nextUpstreamRequest(up, path)
    const client = receive(`${url}${path}`)
    const [, res] = await arrived
    const received = await within(PROMPTLY, client, `${path}: the idle deadline ended the client's response`)
    t.equal(received.status, 200)
    t.equal(received.ending, ending, `${path}: the client sees ${ending === 'end' ? 'a clean end' : 'a cut'} at the idle deadline`)
    t.ok(received.body.length > 0, `${path}: the first bytes came through`)
    await upstreamCloses(t, res, `${path} idle expiry`)
  }
})

t.test('maxStreamDuration ends a flowing SSE stream cleanly and stops the upstream', async (t) => {
  let writes = 0
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    const timer = setInterval(() => { writes++; res.write(`data: ${writes}\n\n`) }, 20)
    res.on('close', () => clearInterval(timer))
  })
  const { url } = await proxyApp(t, { upstream: up.url }, { deadline: { timeout: 5000, maxStreamDuration: 400 } })
  const arrived = nextUpstreamRequest(up, '/live')
  const client = receive(`${url}/live`)
  const [, res] = await arrived
  const received = await within(PROMPTLY, client, 'maxStreamDuration ended the client\'s response')
  t.equal(received.ending, 'end', 'the client sees a clean end')
  t.match(received.body, /^(data: \d+\n\n)+$/, 'only whole events')
  t.ok(received.chunks.length > 3, `${received.chunks.length} chunks streamed before the lifetime ended`)
  await upstreamCloses(t, res, 'lifetime expiry of a flowing stream')
})

t.test('a POST whose body was read is not aborted while the client waits', async (t) => {
  const up = await upstream(t, (req, res) => {
    req.resume()
    req.on('end', () => setTimeout(() => res.end('done'), 400))
  })
  const { url } = await proxyApp(t, { upstream: up.url }, { deadline: { timeout: 5000 } })
  const received = await within(PROMPTLY, receive(`${url}/work`, { method: 'POST', headers: { 'content-type': 'text/plain' } }, 'payload'), 'the client got the upstream\'s answer')
  t.equal(received.status, 200)
  t.equal(received.body, 'done')
  t.equal(received.ending, 'end')
})
