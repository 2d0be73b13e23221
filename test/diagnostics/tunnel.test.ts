// The tunnel:closed channel: who closed each WebSocket tunnel, and how many bytes it carried.
import { once } from 'node:events'
import t from 'tap'
import { CHANNELS, type TunnelClosedMessage, type TunnelOpenedMessage } from '../../index.js'
import { subscribe } from '../helpers/channels.js'
import { openClient, proxyApp, wsUpstream } from '../helpers/ws-servers.js'

t.test('tunnel:opened and tunnel:closed say who opened, who closed the tunnel and counts its bytes', async (t) => {
  const opened = subscribe<TunnelOpenedMessage>(t, CHANNELS.tunnelOpened)
  const closed = subscribe<TunnelClosedMessage>(t, CHANNELS.tunnelClosed)
  const up = await wsUpstream(t)
  const { app, url } = await proxyApp(t, { upstream: up.url })

  const first = await openClient(`${url}/echo`, 'chat.v1')
  await opened.waitFor(1)
  t.match(opened.messages[0], { protocol: 'chat.v1', request: { url: '/ws/echo' } }, 'tunnel:opened with the chosen subprotocol')
  first.send('hello')
  await once(first, 'message')
  first.terminate()
  await closed.waitFor(1)
  t.match(closed.messages[0], { closedBy: 'client', request: { url: '/ws/echo' } })
  t.ok(closed.messages[0].bytesIn > 'hello'.length && closed.messages[0].bytesOut > 'hello'.length, 'the handshakes and the echo were counted both ways')

  const second = await openClient(`${url}/echo`)
  const gone = once(second, 'close')
  await app.close()
  await closed.waitFor(2)
  t.equal(closed.messages[1].closedBy, 'shutdown', 'app.close() ended the second one')
  t.equal((await gone)[0], 1001, 'and its client got 1001')
  t.ok(closed.messages.every(m => m.durationMs >= 0))
})
