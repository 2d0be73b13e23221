// The tunnel:closed channel: who closed each WebSocket tunnel, and how many bytes it carried.
import { once } from 'node:events'
import t from 'tap'
import { CHANNELS, type TunnelClosedMessage, type TunnelOpenedMessage } from '../../index.js'
import { subscribe } from '../helpers/channels.js'
import { openClient, proxyApp, wsUpstream } from '../helpers/ws-servers.js'
import { within } from '../helpers/bounded.js'

t.test('tunnel:opened and tunnel:closed say who opened, who closed the tunnel and counts its bytes', async (t) => {
  const opened = subscribe<TunnelOpenedMessage>(t, CHANNELS.tunnelOpened)
  const closed = subscribe<TunnelClosedMessage>(t, CHANNELS.tunnelClosed)
  const up = await wsUpstream(t)
  const { app, url } = await proxyApp(t, { upstream: up.url })

  const first = await within(5000, openClient(`${url}/echo`, 'chat.v1'), 'the first tunnel opening')
  await within(5000, opened.waitFor(1), 'a tunnel:opened message')
  t.match(opened.messages[0], { protocol: 'chat.v1', request: { url: '/ws/echo' } }, 'tunnel:opened with the chosen subprotocol')
  first.send('hello')
  const [echo] = await within(5000, once(first, 'message'), 'the echo through the first tunnel')
  t.equal(String(echo), 'hello', 'the first tunnel echoed')
  first.terminate()
  await within(5000, closed.waitFor(1), 'a tunnel:closed message for the first tunnel')
  t.match(closed.messages[0], { closedBy: 'client', request: { url: '/ws/echo' } })
  t.ok(closed.messages[0].bytesIn > 'hello'.length && closed.messages[0].bytesOut > 'hello'.length, 'the handshakes and the echo were counted both ways')

  const second = await within(5000, openClient(`${url}/echo`), 'the second tunnel opening')
  const gone = once(second, 'close')
  await within(10_000, app.close(), 'app.close() returning')
  await within(5000, closed.waitFor(2), 'a tunnel:closed message for the second tunnel')
  t.equal(closed.messages[1].closedBy, 'shutdown', 'app.close() ended the second one')
  t.equal((await within(5000, gone, 'the second client\'s close'))[0], 1001, 'and its client got 1001')
  t.ok(closed.messages.every(m => m.durationMs >= 0))
})
