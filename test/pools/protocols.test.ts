import t from 'tap'
import https from 'node:https'
import { once } from 'node:events'
import Fastify from 'fastify'
import { CHANNELS, type StreamEndMessage, type ProxyResponseMessage } from '../../index.js'
import proxy from '../../plugins/proxy/index.js'
import { proxyApp, port } from '../helpers/proxy-servers.js'
import { subscribe } from '../helpers/channels.js'
import { within, PROMPTLY, receiveWithin } from '../helpers/bounded.js'
import { Stream } from '../helpers/stream-client.js'
import { selfSignedCertificate } from '../helpers/tls.js'
import { H2_MODES, h2Request, h2ServerOptions, h2Session } from '../helpers/h2.js'
import { replicas, type ReplicaHandler } from './replicas.js'

// A pool behind HTTP/2 clients, in front of TLS replicas, and through a drain.

t.test('HTTP/2 clients (TLS and h2c): a stopped replica is failed over, the serving replica is reported', async (t) => {
  for (const mode of H2_MODES) {
    const [dead, live] = await replicas(t, ['dead', 'live'])
    await dead.stop()
    const responses = subscribe<ProxyResponseMessage>(t, CHANNELS.proxyResponse)
    const { app } = await proxyApp(t, { upstream: [dead.url, live.url], balance: 'round-robin' }, { fastify: h2ServerOptions(t, mode) as never })
    const session = await h2Session(t, mode, port(app.server))
    const answers = await Promise.all(Array.from({ length: 6 }, async (_, i) => await h2Request(session, `/h2/${i}`).done))
    t.same(answers.map(a => [a.status, a.body, a.ending]), Array(6).fill([200, 'live', 'end']), `${mode}: every stream answered by the live replica`)
    t.ok(responses.messages.every(m => m.upstream === live.url), `${mode}: proxy:response names the replica that served`)
    t.equal(live.seen.length, 6)
  }
})

t.test('TLS replicas found by name: each verified against the name, not the address', async (t) => {
  const certificate = selfSignedCertificate(t)
  const server = https.createServer(certificate, (_req, res) => res.end('secure'))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const upstream = `https://localhost:${port(server)}`
  const { url } = await proxyApp(t, { upstream, resolve: { dns: true }, tls: { ca: certificate.cert } })
  const res = await receiveWithin(url + '/s')
  t.same([res.status, res.body], [200, 'secure'], 'verified as localhost while connected to its address')

  const refused = await proxyApp(t, { upstream, resolve: { dns: true } })
  const untrusted = await receiveWithin(refused.url + '/s')
  t.equal(untrusted.status, 502, 'an unknown certificate is still refused')
  t.equal(JSON.parse(untrusted.body).code, 'FST_STREAMLINE_UPSTREAM_TLS')
})

t.test('drain with a pool: an event stream ends at an event boundary, reported on the replica that served it', async (t) => {
  const handler: ReplicaHandler = (_req, res, name) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(`data: ${name}\n\n`)
  }
  const pool = await replicas(t, ['a', 'b'], handler)
  const ends = subscribe<StreamEndMessage>(t, CHANNELS.streamEnd)
  const app = Fastify()
  await app.register(proxy, { upstream: pool.map(r => r.url), drainTimeout: 2000, healthCheck: { path: '/', interval: 60_000 } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const client = new Stream(`http://127.0.0.1:${port(app.server)}/events`)
  // The first event relayed to the client before the drain starts (not only seen upstream).
  await within(PROMPTLY, client.until(body => body.includes('data: ')), 'the first event at the client')
  const closed = app.close()
  const ending = await within(PROMPTLY, client.done, 'the client\'s stream ended')
  await within(PROMPTLY, closed, 'close() done')
  const res = { ending, body: client.body }
  t.equal(res.ending, 'end', 'a clean end')
  t.match(res.body, /^data: [ab]\n\n/)
  await within(PROMPTLY, ends.waitFor(1), 'stream:end')
  const served = pool.find(r => r.seen.some(s => s.url === '/events'))
  t.same([ends.messages[0].endedBy, ends.messages[0].upstream], ['drain', served?.url])
})
