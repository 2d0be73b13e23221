// How a tunnel ends, as both ends and the tunnel:closed channel see it: a timeout closes both
// sides with a close frame (1001) rather than dropping them (1006), and the side whose close
// frame came first is the one that closed it, whichever TCP connection closes first.
import { once } from 'node:events'
import t, { type Test } from 'tap'
import type { WebSocket } from 'ws'
import { CHANNELS, type TunnelClosedMessage } from '../../index.js'
import { openClient, proxyApp, wsUpstream, type WsUpstream } from '../helpers/ws-servers.js'
import { extendedConnect, h2ConnectSession, h2ProxyApp, webSocketOver } from '../helpers/h2-websocket.js'
import { subscribe } from '../helpers/channels.js'
import { within } from '../helpers/bounded.js'

const GOING_AWAY = 1001

/** The upstream's side of the next tunnel, and the close code it will see. */
async function nextUpstreamSocket (up: WsUpstream): Promise<{ ws: WebSocket, closed: Promise<number> }> {
  return await new Promise(resolve => up.wss.once('connection', (ws: WebSocket) => {
    resolve({ ws, closed: once(ws, 'close').then(([code]) => code as number) })
  }))
}

async function closedBy (t: Test, closes: { messages: TunnelClosedMessage[], waitFor: (n: number) => Promise<void> }, expected: string): Promise<void> {
  await within(5000, closes.waitFor(1), 'the tunnel:closed message')
  t.equal(closes.messages[0].closedBy, expected, `tunnel:closed says closedBy ${expected}`)
}

/**
 * Opens a tunnel with `limits`, keeps it busy when asked, and checks that a timeout closed both
 * sides with 1001 and reported `reason`.
 */
async function timesOut (t: Test, limits: { wsIdleTimeout?: number, wsMaxStreamDuration?: number }, busy: boolean, reason: string): Promise<void> {
  const closes = subscribe<TunnelClosedMessage>(t, CHANNELS.tunnelClosed)
  const up = await wsUpstream(t)
  const { url } = await proxyApp(t, { upstream: up.url, ...limits, wsCloseGrace: 2000 })
  const upstreamSide = nextUpstreamSocket(up)
  const client = await within(5000, openClient(`${url}/${reason}`), 'the tunnel opened')
  const clientClosed = once(client, 'close').then(([code]) => code as number)
  const { closed } = await within(5000, upstreamSide, 'the upstream side of the tunnel')
  if (busy) {
    // Messages both ways all along: the lifetime applies however busy the tunnel is.
    const chatter = setInterval(() => { if (client.readyState === client.OPEN) client.send('ping '.repeat(200)) }, 20)
    t.teardown(() => clearInterval(chatter))
  }
  t.equal(await within(5000, clientClosed, 'the client\'s close'), GOING_AWAY, 'the client got 1001')
  t.equal(await within(5000, closed, 'the upstream\'s close'), GOING_AWAY, 'the upstream got 1001')
  await closedBy(t, closes, reason)
}

t.test('wsIdleTimeout: both sides get a 1001 close frame, not a dropped connection', async (t) => {
  await timesOut(t, { wsIdleTimeout: 300 }, false, 'idle')
})

t.test('wsMaxStreamDuration: a busy tunnel closes with 1001 on both sides', async (t) => {
  await timesOut(t, { wsMaxStreamDuration: 400 }, true, 'lifetime')
})

t.test('closedBy names the side whose close frame came first', async (t) => {
  for (const [first, code] of [['client', 1000], ['upstream', 4000]] as const) {
    const closes = subscribe<TunnelClosedMessage>(t, CHANNELS.tunnelClosed)
    const up = await wsUpstream(t)
    const { url } = await proxyApp(t, { upstream: up.url })
    const upstreamSide = nextUpstreamSocket(up)
    const client = await within(5000, openClient(`${url}/${first}`), 'the tunnel opened')
    const clientClosed = once(client, 'close').then(([got]) => got as number)
    const { ws, closed } = await within(5000, upstreamSide, 'the upstream side of the tunnel')
    // The upstream (a ws server) closes its TCP connection first either way, as RFC 6455 asks.
    if (first === 'client') client.close(code)
    else ws.close(code)
    t.equal(await within(5000, clientClosed, 'the client\'s close'), code, `${first}: the client saw ${code}`)
    t.equal(await within(5000, closed, 'the upstream\'s close'), code, `${first}: the upstream saw ${code}`)
    await closedBy(t, closes, first)
  }
})

t.test('h2c: wsIdleTimeout closes an extended CONNECT tunnel with 1001 on both sides', async (t) => {
  const closes = subscribe<TunnelClosedMessage>(t, CHANNELS.tunnelClosed)
  const up = await wsUpstream(t)
  const { port } = await h2ProxyApp(t, 'h2c', { upstream: up.url, wsIdleTimeout: 300, wsCloseGrace: 2000 })
  const session = await h2ConnectSession(t, 'h2c', port)
  const upstreamSide = nextUpstreamSocket(up)
  const request = extendedConnect(session, '/ws/idle')
  const response = await within(5000, request.response, 'the tunnel opened')
  t.equal(response[':status'], 200)
  const client = webSocketOver(request.stream)
  const clientClosed = once(client, 'close').then(([code]) => code as number)
  const { closed } = await within(5000, upstreamSide, 'the upstream side of the tunnel')
  t.equal(await within(5000, clientClosed, 'the client\'s close'), GOING_AWAY, 'the client got 1001')
  t.equal(await within(5000, closed, 'the upstream\'s close'), GOING_AWAY, 'the upstream got 1001')
  await closedBy(t, closes, 'idle')
})
