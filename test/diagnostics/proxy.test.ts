// The proxy's diagnostics channels on real sockets: the upstream's head latency, every way a
// relayed body can end, and the answer a failed upstream call produced.
import http from 'node:http'
import { once } from 'node:events'
import t from 'tap'
import { CHANNELS, type ProxyResponseMessage, type StreamEndMessage, type UpstreamErrorMessage } from '../../index.js'
import { proxyApp, receive, upstream } from '../helpers/proxy-servers.js'
import { subscribe } from '../helpers/channels.js'

const HEAD_DELAY = 200

function upstreamRoutes (req: http.IncomingMessage, res: http.ServerResponse): void {
  const path = req.url ?? '/'
  if (path === '/late') {
    setTimeout(() => res.end('late body'), HEAD_DELAY)
  } else if (path === '/whole') {
    res.end('0123456789')
  } else if (path.startsWith('/quiet')) {
    res.writeHead(200, { 'content-type': path === '/quiet-events' ? 'text/event-stream' : 'application/octet-stream' })
    res.write('first')
  } else if (path === '/ticker') {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    const timer = setInterval(() => res.write('data: tick\n\n'), 40)
    res.on('close', () => clearInterval(timer))
  } else if (path === '/dies') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.write('partial', () => res.socket?.destroy())
  }
}

t.test('proxy:response gives the status and how long the upstream took to answer', async (t) => {
  const responses = subscribe<ProxyResponseMessage>(t, CHANNELS.proxyResponse)
  const up = await upstream(t, upstreamRoutes)
  const { url } = await proxyApp(t, { upstream: up.url })
  const received = await receive(`${url}/late`)
  t.equal(received.body, 'late body')
  await responses.waitFor(1)
  const [message] = responses.messages
  t.equal(message.statusCode, 200)
  t.equal(message.request.url, '/late')
  t.ok(message.upstreamHeadersMs >= HEAD_DELAY - 10 && message.upstreamHeadersMs < HEAD_DELAY + 2000, `${message.upstreamHeadersMs} ms to the head (upstream waited ${HEAD_DELAY})`)
})

t.test('stream:end says who ended each relayed body, and how many bytes went through', async (t) => {
  const ends = subscribe<StreamEndMessage>(t, CHANNELS.streamEnd)
  const up = await upstream(t, upstreamRoutes)
  const { url } = await proxyApp(t, [
    { upstream: up.url },
    { upstream: up.url, prefix: '/long', rewritePrefix: '', config: { deadline: { maxStreamDuration: 400 } } }
  ], { deadline: { timeout: 5000, streamIdleTimeout: 400 } })

  t.equal((await receive(`${url}/whole`)).body, '0123456789')
  t.equal((await receive(`${url}/quiet-events`)).ending, 'end', 'an idle event stream ends cleanly')
  t.equal((await receive(`${url}/quiet-download`)).ending, 'cut', 'an idle download is cut')
  t.equal((await receive(`${url}/long/ticker`)).ending, 'end', 'a flowing event stream ends at its lifetime')
  t.equal((await receive(`${url}/dies`)).ending, 'cut', 'an upstream that dies mid-body cuts the client')

  const client = http.get(`${url}/quiet-events`, { agent: false })
  client.on('error', () => {})
  const [res] = await once(client, 'response') as [http.IncomingMessage]
  res.on('error', () => {})
  await once(res, 'data')
  client.destroy()

  await ends.waitFor(6)
  t.same(ends.messages.map(m => [m.request.url, m.endedBy]), [
    ['/whole', 'upstream'],
    ['/quiet-events', 'idle'],
    ['/quiet-download', 'idle'],
    ['/long/ticker', 'lifetime'],
    ['/dies', 'upstream'],
    ['/quiet-events', 'client']
  ])
  t.equal(ends.messages[0].bytes, 10, 'the whole body was counted')
  t.equal(ends.messages[1].bytes, 5, 'the bytes relayed before the idle end')
  t.ok(ends.messages[3].durationMs >= 300 && ends.messages[3].durationMs < 3000, `lifetime stream lasted ${ends.messages[3].durationMs} ms (limit 400)`)
})

t.test('proxy:upstream-error gives the code and status the client got', async (t) => {
  const errors = subscribe<UpstreamErrorMessage>(t, CHANNELS.upstreamError)
  // Nothing listens on port 9 of 127.0.0.1 (discard): the connection is refused.
  const { url } = await proxyApp(t, { upstream: 'http://127.0.0.1:9' })
  const received = await receive(`${url}/anything`)
  t.equal(received.status, 502)
  t.equal(JSON.parse(received.body).code, 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE')
  await errors.waitFor(1)
  t.match(errors.messages[0], { code: 'FST_STREAMLINE_UPSTREAM_UNAVAILABLE', statusCode: 502, request: { url: '/anything' } })
  t.ok(errors.messages[0].error instanceof Error, 'with the underlying error')
})

t.test('stream:end says "drain" for streams that app.close() ended or cut', async (t) => {
  const ends = subscribe<StreamEndMessage>(t, CHANNELS.streamEnd)
  const up = await upstream(t, upstreamRoutes)
  const { app, url } = await proxyApp(t, { upstream: up.url, drainTimeout: 300 })
  const opened = ['/quiet-events', '/quiet-download'].map(async (path) => {
    const client = http.get(`${url}${path}`, { agent: false })
    client.on('error', () => {})
    const [res] = await once(client, 'response') as [http.IncomingMessage]
    res.on('error', () => {})
    await once(res, 'data')
    return client
  })
  const clients = await Promise.all(opened)
  await app.close()
  await ends.waitFor(2)
  t.same(ends.messages.map(m => m.endedBy).sort(), ['drain', 'drain'], 'both the event stream (ended) and the download (cut)')
  for (const client of clients) client.destroy()
})
