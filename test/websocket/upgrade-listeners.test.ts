// Other 'upgrade' listeners on the same server: one that only watches does not stop the
// pass-through; one that takes its own paths keeps them; an upgrade nobody takes gets a 404.
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import t from 'tap'
import { WebSocketServer } from 'ws'
import { openClient, parseReply, proxyApp, rawClient, upgradeRequest, wsUpstream } from '../helpers/ws-servers.js'
import { PROMPTLY, within } from '../helpers/bounded.js'

/** A `ws` client through the app, open; bounded. */
async function openedAt (...args: Parameters<typeof openClient>): ReturnType<typeof openClient> {
  return await within(PROMPTLY, openClient(...args), `a WebSocket opened at ${args[0]}`)
}

t.test('a listener that only watches upgrades, registered before the proxy, does not stop the tunnel', async (t) => {
  const up = await wsUpstream(t)
  const watched: string[] = []
  const { app, url } = await proxyApp(t, {
    upstream: up.url,
    before: (app) => { app.server.on('upgrade', (req: IncomingMessage) => { watched.push(req.url ?? '') }) }
  })
  const ws = await openedAt(`${url}/echo`, undefined, { handshakeTimeout: 5000 })
  ws.send('through')
  const [reply] = await within(PROMPTLY, once(ws, 'message'), 'the echo through the tunnel')
  t.equal(String(reply), 'through', 'the upstream echoes through the tunnel')
  t.same(watched, ['/ws/echo'], 'the watcher saw the upgrade')
  t.equal(up.handshakes[0].url, '/echo', 'the upstream got the handshake')
  ws.close()
  await within(PROMPTLY, once(ws, 'close'), 'the tunnel closed')
  const start = Date.now()
  await within(PROMPTLY, app.close(), 'app.close() returned')
  t.ok(Date.now() - start < 2000, `close() returned after ${Date.now() - start} ms`)
})

t.test('the app\'s own upgrade handler keeps its paths; the proxy keeps its prefix; nobody\'s path gets a 404', async (t) => {
  const up = await wsUpstream(t)
  const own = new WebSocketServer({ noServer: true })
  t.teardown(() => own.close())
  own.on('connection', ws => ws.on('message', data => ws.send(`own: ${String(data)}`)))
  const { app, port, url } = await proxyApp(t, { upstream: up.url })
  // Added after the proxy, as an app adding its raw handler late would.
  app.server.on('upgrade', (req: IncomingMessage, socket, head) => {
    if (req.url !== '/own') return
    own.handleUpgrade(req, socket, head, ws => own.emit('connection', ws, req))
  })

  const mine = await openedAt(`ws://127.0.0.1:${port}/own`, undefined, { handshakeTimeout: 5000 })
  mine.send('hi')
  t.equal(String((await within(PROMPTLY, once(mine, 'message'), 'the app\'s own WebSocket answered'))[0]), 'own: hi', 'the app\'s handler answered its path')
  const proxied = await openedAt(`${url}/echo`, undefined, { handshakeTimeout: 5000 })
  proxied.send('through')
  t.equal(String((await within(PROMPTLY, once(proxied, 'message'), 'the echo through the tunnel'))[0]), 'through', 'the proxy tunnelled its prefix')
  t.same(up.handshakes.map(h => h.url), ['/echo'], 'only the prefixed upgrade reached the upstream')

  const raw = await rawClient(t, port)
  raw.socket.write(upgradeRequest('/nobody'))
  await within(PROMPTLY, raw.closed, 'the proxy answered and closed the raw connection')
  const reply = parseReply(raw.received())
  t.equal(reply.status, 404, 'an upgrade nobody takes is answered 404')
  t.equal(JSON.parse(reply.body).statusCode, 404)
  t.equal(raw.received().toString('latin1').match(/HTTP\/1\.1/g)?.length, 1, 'exactly one answer')
  mine.terminate()
  proxied.terminate()
})
