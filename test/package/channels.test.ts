// The typed channels as a user subscribes to them, from the built package (`npm test` builds
// first): each subscriber gets its channel's message for a real request on 127.0.0.1.
import http from 'node:http'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import { channels, deadline, proxy, type TypedChannel } from 'fastify-streamline'
import { receive } from '../helpers/receive.js'

/** The first message `channel` publishes from now on; rejects, naming the channel, after `ms`. */
function nextMessage<Message> (t: Test, channel: TypedChannel<Message>, ms: number): Promise<Message> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: Message): void => { clearTimeout(timer); channel.unsubscribe(onMessage); resolve(message) }
    const timer = setTimeout(() => { channel.unsubscribe(onMessage); reject(new Error(`no message on ${channel.name} within ${ms} ms`)) }, ms)
    channel.subscribe(onMessage)
    t.teardown(() => { clearTimeout(timer); channel.unsubscribe(onMessage) })
  })
}

/** An upstream that answers every request with `hello`, recording the paths it saw. */
async function upstream (t: Test): Promise<{ url: string, seen: string[] }> {
  const seen: string[] = []
  const server = http.createServer((req, res) => { seen.push(req.url ?? ''); req.resume(); res.end('hello') })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { url: `http://127.0.0.1:${address.port}`, seen }
}

async function ingress (t: Test, upstreamUrl: string): Promise<string> {
  const app = Fastify()
  await app.register(deadline, { timeout: 300 })
  await app.register(proxy, { upstream: upstreamUrl, prefix: '/api' })
  // Never answers: the deadline does.
  app.get('/stuck', async (request) => await new Promise((resolve) => request.deadline.signal.addEventListener('abort', resolve)))
  t.teardown(() => app.close())
  return await app.listen({ port: 0, host: '127.0.0.1' })
}

t.test('deadlineExpired and streamEnd deliver their messages to typed subscribers', async (t) => {
  const up = await upstream(t)
  const url = await ingress(t, up.url)

  const expired = nextMessage(t, channels.deadlineExpired, 10_000)
  const stuck = await receive(`${url}/stuck`)
  t.equal(stuck.status, 504, 'the client got the deadline\'s 504')
  const { route, phase, outcome, elapsed, request } = await expired
  t.same({ route, phase, outcome, url: request.url }, { route: '/stuck', phase: 'response', outcome: '504', url: '/stuck' })
  t.ok(elapsed >= 250 && elapsed < 10_000, `expired after ${elapsed} ms (timeout 300)`)

  const ended = nextMessage(t, channels.streamEnd, 10_000)
  const proxied = await receive(`${url}/api/a`)
  t.same([proxied.status, proxied.body], [200, 'hello'], 'the client got the upstream\'s answer')
  t.same(up.seen, ['/a'], 'the upstream saw the one proxied request')
  const { endedBy, bytes } = await ended
  t.same({ endedBy, bytes }, { endedBy: 'upstream', bytes: 5 })
})
