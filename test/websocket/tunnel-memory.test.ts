// An open tunnel holds as little as it can: once the upstream's 101 went to the client, the
// handshake's ServerResponse and Reply are unreachable (the per-tunnel heap the WebSocket bench
// measures); the tunnel keeps working without them.
import { once } from 'node:events'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { openClient, proxyApp, wsUpstream } from '../helpers/ws-servers.js'
import { PROMPTLY, within } from '../helpers/bounded.js'

/** A `ws` client through the app, open; bounded. */
async function openedAt (...args: Parameters<typeof openClient>): ReturnType<typeof openClient> {
  return await within(PROMPTLY, openClient(...args), `a WebSocket opened at ${args[0]}`)
}

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** Collects until every reference is cleared, for at most 50 rounds (a turn of the loop each). */
async function collected (refs: Array<WeakRef<object>>): Promise<boolean> {
  for (let round = 0; round < 50; round++) {
    gc()
    if (refs.every(ref => ref.deref() === undefined)) return true
    await new Promise(resolve => setImmediate(resolve))
  }
  return false
}

t.test('an open tunnel keeps neither the ServerResponse nor the Reply of its handshake', async (t) => {
  const up = await wsUpstream(t)
  let refs: Array<WeakRef<object>> = []
  const { url } = await proxyApp(t, {
    upstream: up.url,
    before: app => {
      app.addHook('onRequest', async (_request, reply) => {
        refs.push(new WeakRef(reply), new WeakRef(reply.raw))
      })
    }
  })
  const ws = await openedAt(`${url}/memory`)
  t.teardown(() => ws.terminate())
  t.equal(up.handshakes.length, 1, 'the upstream saw one handshake')
  t.equal(up.handshakes[0].url, '/memory', 'for the client\'s path, prefix removed')
  t.equal(refs.length, 2, 'the upgrade went through the route hooks')
  t.ok(await collected(refs), 'the ServerResponse and the Reply were collected while the tunnel is open')
  refs = []

  ws.send('after the collection')
  const [echo] = await within(PROMPTLY, once(ws, 'message'), 'the echo through the tunnel')
  t.equal(String(echo), 'after the collection', 'the client still gets the upstream\'s echo')
  ws.close(1000)
  const [code] = await within(PROMPTLY, once(ws, 'close'), 'the tunnel closed')
  t.equal(code, 1000, 'and a clean close')
  t.equal(process.exitCode ?? 0, 0, 'the process is alive and well')
})
