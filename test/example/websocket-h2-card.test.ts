// The example page's WebSocket card in a real browser (Debian's chromium driven by
// playwright-core): its protocol badge shows how the socket reached the ingress as soon as it
// opens, before any message is sent. With HTTPS=1 that is HTTP/2: the ingress advertises RFC 8441
// extended CONNECT and Chromium opens the socket as a stream of the page's connection; with
// H2_WEBSOCKET=0, or over plain HTTP, an HTTP/1.1 upgrade. No skip: without chromium this fails.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import { openPage } from '../helpers/chromium.js'
import { startExample } from '../helpers/example-app.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SCREENSHOT = fileURLToPath(new URL('../artifacts/example-page-h2-websocket.png', import.meta.url))
const WAIT = { timeout: 30_000 }

interface Case {
  name: string
  env: Record<string, string>
  /** What the badge shows, as data-proto and as text. */
  proto: string
  text: string
  /** The Via the live service receives from the ingress. */
  via: string
  /** What the example prints about WebSockets at start (HTTPS only). */
  startLine: RegExp | null
}

const CASES: Case[] = [
  { name: 'HTTPS=1', env: { HTTPS: '1' }, proto: 'h2', text: 'HTTP/2', via: '2 streamline-example', startLine: /WebSockets over HTTP\/2 \(RFC 8441 extended CONNECT\)/ },
  { name: 'HTTPS=1 H2_WEBSOCKET=0', env: { HTTPS: '1', H2_WEBSOCKET: '0' }, proto: 'http/1.1', text: 'HTTP/1.1', via: '1.1 streamline-example', startLine: /WebSockets over HTTP\/1\.1 upgrades \(H2_WEBSOCKET=0\)/ },
  { name: 'plain HTTP', env: {}, proto: 'http/1.1', text: 'HTTP/1.1', via: '1.1 streamline-example', startLine: null }
]

for (const c of CASES) {
  test(`${c.name}: the WebSocket card shows ${c.text} as soon as the socket opens`, async (t) => {
    const app = await startExample(t, c.env)
    if (c.startLine !== null) await app.lines.waitFor(c.startLine)
    const { page, pageErrors } = await openPage(t, c.env.HTTPS === '1')
    await page.goto(`${app.ingress}/`)

    await page.waitForSelector('#ws-state[data-state="open"]', WAIT)
    // The welcome comes right behind the handshake: a badge still empty after seconds is a failure.
    await page.waitForSelector('#ws-proto[data-proto]', { timeout: 10_000 })
    t.equal(await page.getAttribute('#ws-proto', 'data-proto'), c.proto, 'the badge names the protocol that reached the ingress')
    t.equal(await page.textContent('#ws-proto'), c.text)
    t.equal(await page.locator('#ws-log li.echo').count(), 0, 'before any message was sent')
    t.equal(await page.textContent('#ws-log li.welcome'), `← welcome: joined as chat.v2 over ${c.text}`)
    const via = c.via.replace('.', '\\.')
    await app.lines.waitFor(new RegExp(`\\[live\\] chat client joined with subprotocol "chat\\.v2" \\(offered: echo\\.v1, chat\\.v2\\), via ${via}$`))
    t.pass(`the live service saw the socket arrive with Via: ${c.via}`)

    await page.fill('#ws-input', `hello over ${c.name}`)
    await page.click('#ws-send')
    await page.waitForSelector('#ws-log li.echo', WAIT)
    t.match(await page.textContent('#ws-log li.echo'), new RegExp(`^← echo "hello over ${c.name}" · \\d+ ms round trip$`), 'the socket carries messages')
    t.equal(await page.getAttribute('#ws-proto', 'data-proto'), c.proto, 'the echo confirms the badge')

    if (c.proto === 'h2') {
      await mkdir(join(SCREENSHOT, '..'), { recursive: true })
      await page.screenshot({ path: SCREENSHOT, fullPage: true })
    }
    t.same(pageErrors, [], 'no error on the page')
    t.same(await app.stop(), { code: 0, signal: null }, 'the example exits cleanly on SIGTERM, the socket open')
  })
}

test('H2_WEBSOCKET=1 without HTTPS=1 is refused at start, naming the setting', async (t) => {
  const child = spawn(process.execPath, ['example-app/start.js'], {
    cwd: ROOT,
    env: { ...process.env, INGRESS_PORT: '0', LIVE_PORT: '0', FILES_PORT: '0', HTTPS: '', H2_WEBSOCKET: '1' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
  t.teardown(() => { clearTimeout(timer); child.kill('SIGKILL') })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  child.stdout.resume()
  const [code, signal] = await once(child, 'exit') as [number | null, NodeJS.Signals | null]
  t.equal(signal, null, 'it exited on its own, not killed after 20 s')
  t.not(code, 0, 'with a failure status')
  t.match(stderr, 'H2_WEBSOCKET=1 is used with HTTPS=1 only')
})
