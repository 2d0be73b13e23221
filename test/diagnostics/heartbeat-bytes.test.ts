// stream:end counts every body byte the client received, the proxy's SSE heartbeats included.
import http from 'node:http'
import { once } from 'node:events'
import t from 'tap'
import { CHANNELS, type StreamEndMessage } from '../../index.js'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { subscribe } from '../helpers/channels.js'
import { within } from '../helpers/bounded.js'

const PERIOD = 200

t.test('stream:end bytes include the heartbeats written between events', async (t) => {
  const ends = subscribe<StreamEndMessage>(t, CHANNELS.streamEnd)
  let finish: () => void = () => {}
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: one\n\n')
    finish = () => res.end('data: two\n\n')
  })
  const { url } = await proxyApp(t, { upstream: up.url, sseHeartbeat: PERIOD })
  const response = await within(5000, new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get(`${url}/events`, resolve).on('error', reject)
  }), 'the response head')
  let body = ''
  response.setEncoding('latin1')
  response.on('data', (chunk: string) => { body += chunk })
  // Quiet long enough for at least two heartbeats, then the last event.
  while ((body.match(/^:\n\n/gm) ?? []).length < 2) await within(5000, once(response, 'data'), `two heartbeats (got ${JSON.stringify(body)})`)
  finish()
  await within(5000, once(response, 'end'), 'the end of the stream')
  await within(5000, ends.waitFor(1), 'the stream:end message')
  t.match(body, /^data: one\n\n(:\n\n)+data: two\n\n$/, 'the client got both events with heartbeats between them')
  t.equal(ends.messages[0].endedBy, 'upstream')
  t.equal(ends.messages[0].bytes, Buffer.byteLength(body, 'latin1'), 'stream:end counts exactly the bytes the client received')
})
