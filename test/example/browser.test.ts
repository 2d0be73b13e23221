// The example page in a real browser (Debian's chromium driven by playwright-core): what a
// user sees when they open the ingress. No skip: without chromium this test fails.
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, type Test } from 'tap'
import type { Page } from 'playwright-core'
import { openPage } from '../helpers/chromium.js'
import { startExample, type RunningExample } from '../helpers/example-app.js'

const SCREENSHOT = fileURLToPath(new URL('../artifacts/example-page.png', import.meta.url))
const TIMEOUT_MS = 1000
const DOWNLOAD_MB = 128 // half the default: the bar must reach 100 %, the size only costs test time
const WAIT = { timeout: 30_000 }

/** The proxied ticker keeps its one connection past the timeout; the in-app clock starts after it. */
async function eventStreamsPastTheTimeout (t: Test, page: Page, app: RunningExample): Promise<void> {
  await page.waitForFunction(() => Number(document.getElementById('sse-count')?.textContent) >= 3 &&
    document.querySelectorAll('#sse-events tr[data-after-timeout="true"]').length >= 1, null, WAIT)
  t.equal(await page.getAttribute('#sse-state', 'data-state'), 'open')
  t.equal(app.lines.lines.filter(line => line.includes('[live] ticker stream opened')).length, 1,
    'the upstream saw one stream, never a reconnect')
  await page.waitForFunction(() => Number(document.getElementById('clock-count')?.textContent) >= 1, null, WAIT)
  const first = Number.parseFloat(await page.textContent('#clock-first') ?? '')
  t.ok(first * 1000 >= TIMEOUT_MS, `the in-app streaming-mode route's first event came after ${first} s, past the timeout`)
}

async function webSocketEcho (t: Test, page: Page, app: RunningExample): Promise<void> {
  await page.waitForSelector('#ws-state[data-state="open"]', WAIT)
  t.equal(await page.textContent('#ws-protocol'), 'chat.v2', 'offered echo.v1, chat.v2; the upstream picked chat.v2')
  await page.fill('#ws-input', 'hello from chromium')
  await page.click('#ws-send')
  await page.waitForSelector('#ws-log li.echo', WAIT)
  t.match(await page.textContent('#ws-log li.echo'), /← echo "hello from chromium" · \d+ ms round trip/)
  // ExampleLines.waitFor rejects, naming the line, after 10 s.
  await app.lines.waitFor(/\[live\] chat client joined with subprotocol "chat\.v2" \(offered: echo\.v1, chat\.v2\)/)
}

async function downloadReaches100 (t: Test, page: Page, app: RunningExample): Promise<void> {
  await page.waitForSelector('#download-percent[data-state="done"], #download-percent[data-state="error"]', { timeout: 90_000 })
  t.equal(await page.textContent('#download-percent'), '100 %')
  t.match(await page.textContent('#download-bytes'), `${DOWNLOAD_MB}.0 of ${DOWNLOAD_MB} MB`)
  await app.lines.waitFor(new RegExp(`\\[files\\] download of ${DOWNLOAD_MB * 1024 * 1024} bytes sent`))
}

async function slowCallGets504 (t: Test, page: Page, app: RunningExample): Promise<void> {
  await page.waitForSelector('#slow-status[data-state="error"]', WAIT)
  t.equal(await page.textContent('#slow-status'), '504 Gateway Timeout')
  t.equal(await page.textContent('#slow-phase'), 'response')
  t.equal(await page.textContent('#slow-code'), 'FST_STREAMLINE_DEADLINE_EXCEEDED')
  const [, after] = await app.lines.waitFor(/\[files\] \/slow cancelled by the caller after (\d+) ms/)
  t.ok(Number(after) < 5000, `the upstream was aborted after ${after} ms`)
}

async function authHook (t: Test, page: Page): Promise<void> {
  await page.click('#auth-without')
  await page.waitForSelector('#auth-status[data-state="error"]', WAIT)
  t.match(await page.textContent('#auth-status'), /^401/)
  await page.click('#auth-with')
  await page.waitForSelector('#auth-status[data-state="ok"]', WAIT)
  t.match(await page.textContent('#auth-body'), /"authorizationSeen":true/)
}

test('the example page shows SSE, WebSocket, download and a 504 through the ingress', async (t) => {
  const app = await startExample(t, {
    DEADLINE_TIMEOUT_MS: String(TIMEOUT_MS), TICK_MS: '300', CLOCK_DELAY_MS: '1500', SLOW_MS: '5000', DOWNLOAD_MB: String(DOWNLOAD_MB)
  })
  const { page, pageErrors } = await openPage(t)

  await page.goto(`${app.ingress}/`)
  await page.waitForSelector('#settings-line[data-state="loaded"]', WAIT)
  t.match(await page.textContent('#settings-line'), /timeout 1 s · streamIdleTimeout 15 s · maxStreamDuration off · 504 on expiry/)

  // Start the download and the slow call at once; the streams run meanwhile.
  await page.click('#download-start')
  await page.click('#slow-call')

  await t.test('EventSource: events keep arriving after the timeout, on one connection', async (t) => { await eventStreamsPastTheTimeout(t, page, app) })
  await t.test('WebSocket: echo round trip with the subprotocol the upstream chose', async (t) => { await webSocketEcho(t, page, app) })
  await t.test('download: the progress bar reaches 100 % from the streamed body', async (t) => { await downloadReaches100(t, page, app) })
  await t.test('slow endpoint: the page shows the 504 and the deadline phase', async (t) => { await slowCallGets504(t, page, app) })
  await t.test('auth hook: 401 without the token, 200 with it', async (t) => { await authHook(t, page) })

  await mkdir(join(SCREENSHOT, '..'), { recursive: true })
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  // Chromium logs every 4xx/5xx fetch as a console error: the 504 and 401 above are expected.
  const asked = [504, 401].map(status => `Failed to load resource: the server responded with a status of ${status} `)
  t.same(pageErrors.filter(message => !asked.some(prefix => message.startsWith(prefix))), [], 'no other error on the page')
})
