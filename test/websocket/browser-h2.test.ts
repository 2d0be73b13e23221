// A browser WebSocket through the proxy on an HTTP/2 origin (Debian's chromium driven by
// playwright-core): with SETTINGS_ENABLE_CONNECT_PROTOCOL advertised Chromium opens it as an
// RFC 8441 extended CONNECT stream on the page's own connection; without it, as an HTTP/1.1
// upgrade on a second connection (allowHTTP1). No skip: without chromium this test fails.
import t from 'tap'
import type { Page } from 'playwright-core'
import { openPage } from '../helpers/chromium.js'
import { h2ProxyApp } from '../helpers/h2-websocket.js'
import { wsUpstream } from '../helpers/ws-servers.js'
import { within } from '../helpers/bounded.js'

const PAGE = `<!doctype html><title>ws</title><link rel="icon" href="data:,"><script>
window.openSocket = (path) => new Promise((resolve) => {
  const ws = new WebSocket('wss://' + location.host + path, ['chat'])
  ws.onopen = () => ws.send('hello from chromium')
  ws.onmessage = (event) => { resolve({ echo: event.data, protocol: ws.protocol }); ws.close(1000) }
  ws.onclose = (event) => resolve({ closed: event.code })
})
</script>`

interface Seen { method: string, httpVersion: string, url: string }

// A browser's WebSocket gets no timeout of its own here: bound what the page reports.
const BROWSER = 15_000

/** What the page's openSocket(path) resolved with; bounded. */
async function socketResult (page: Page, path: string): Promise<unknown> {
  const opened = page.evaluate(async (path) => await (window as unknown as { openSocket: (p: string) => Promise<unknown> }).openSocket(path), path)
  return await within(BROWSER, opened, `the page's WebSocket to ${path} opened and echoed, or closed`)
}

for (const enableConnectProtocol of [true, false]) {
  t.test(`Chromium WebSocket with extended CONNECT ${enableConnectProtocol ? 'on' : 'off'}`, async (t) => {
    const up = await wsUpstream(t, { handleProtocols: (protocols) => protocols.has('chat') ? 'chat' : false })
    const seen: Seen[] = []
    const { port } = await h2ProxyApp(t, 'tls', {
      upstream: up.url,
      enableConnectProtocol,
      before: (app) => {
        app.addHook('onRequest', async (request) => {
          if (request.url !== '/') seen.push({ method: request.method, httpVersion: request.raw.httpVersion, url: request.url })
        })
        app.get('/', async (_request, reply) => await reply.type('text/html').send(PAGE))
      }
    })
    const { page } = await openPage(t, true)
    const response = await page.goto(`https://127.0.0.1:${port}/`)
    t.equal(response?.status(), 200, 'page loaded')
    const protocolUsed = await page.evaluate(() => (performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming).nextHopProtocol)
    t.equal(protocolUsed, 'h2', 'the page came over HTTP/2')

    const result = await socketResult(page, '/ws/echo')
    t.same(result, { echo: 'hello from chromium', protocol: 'chat' }, 'echoed, with the upstream\'s subprotocol')
    t.same(seen, [{ method: enableConnectProtocol ? 'CONNECT' : 'GET', httpVersion: enableConnectProtocol ? '2.0' : '1.1', url: '/ws/echo' }],
      enableConnectProtocol ? 'an extended CONNECT on the page\'s HTTP/2 connection' : 'an HTTP/1.1 upgrade')
    t.equal(up.handshakes.length, 1)
    t.equal(Buffer.from(String(up.handshakes[0].headers['sec-websocket-key']), 'base64').length, 16, 'the upstream got a valid key')
    t.equal(up.handshakes[0].headers.origin, `https://127.0.0.1:${port}`, 'and the page\'s Origin')

    if (enableConnectProtocol) {
      // No route takes a WebSocket here: the 404 fails it, and Chromium does not retry over HTTP/1.1.
      const missing = await socketResult(page, '/elsewhere')
      t.same(missing, { closed: 1006 }, 'a WebSocket to a path without a route fails')
      t.same(seen.map(s => `${s.method} ${s.httpVersion} ${s.url}`), ['CONNECT 2.0 /ws/echo', 'CONNECT 2.0 /elsewhere'], 'no HTTP/1.1 retry')
    }
  })
}
