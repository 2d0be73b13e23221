// A subscriber that throws, subscribed through `channels`, is logged on its request and the
// process goes on (Node's diagnostics_channel would rethrow it on the next tick and end it).
// Unsubscribing with the same function removes it.
import t from 'tap'
import type { FastifyServerOptions } from 'fastify'
import { channels } from '../../index.js'
import { proxyApp, receive, upstream } from '../helpers/proxy-servers.js'
import { within } from '../helpers/bounded.js'

t.test('a throwing subscriber is logged on its request; the response and the process go on', async (t) => {
  const lines: Array<{ level: number, msg: string, channel?: string, err?: { message?: string } }> = []
  const stream = { write (line: string) { lines.push(JSON.parse(line)) } }
  const up = await upstream(t, (_req, res) => res.end('fine'))
  const { url } = await proxyApp(t, { upstream: up.url }, { fastify: { logger: { level: 'info', stream } } as FastifyServerOptions })
  let calls = 0
  const broken = (): void => { calls++; throw new Error('subscriber bug') }
  channels.proxyResponse.subscribe(broken)
  t.teardown(() => { channels.proxyResponse.unsubscribe(broken) })
  const first = await within(5000, receive(`${url}/a`), 'the first answer')
  t.equal(first.status, 200)
  t.equal(first.body, 'fine', 'the client got the whole response')
  t.equal(calls, 1, 'the subscriber ran')
  const logged = lines.find(line => line.msg === 'a diagnostics subscriber threw; the request goes on')
  t.equal(logged?.level, 50, 'logged at error on the request')
  t.equal(logged?.channel, 'fastify-streamline:proxy:response')
  t.equal(logged?.err?.message, 'subscriber bug')
  // Still alive on the next turn, when Node would have rethrown.
  await new Promise(resolve => setImmediate(resolve))
  t.equal(channels.proxyResponse.unsubscribe(broken), true, 'unsubscribe finds it')
  const second = await within(5000, receive(`${url}/b`), 'the second answer')
  t.equal(second.body, 'fine')
  t.equal(calls, 1, 'no longer called once unsubscribed')
})
