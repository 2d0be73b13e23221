// The example over HTTPS=1 in a real browser: HTTP/2 to the page, so that one origin carries
// more event streams than HTTP/1.1's 6 connections per origin would. Extended CONNECT (RFC 8441)
// is turned off here (H2_WEBSOCKET=0; websocket-h2-card.test.ts covers it on): Chromium then opens
// its WebSocket with an HTTP/1.1 upgrade on a connection of its own, which the ingress serves
// through allowHTTP1. No skip: without chromium
// this test fails.
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, type Test } from 'tap'
import type { Page } from 'playwright-core'
import { openPage } from '../helpers/chromium.js'
import { startExample, type RunningExample } from '../helpers/example-app.js'
import { within } from '../helpers/bounded.js'

const SCREENSHOT = fileURLToPath(new URL('../artifacts/example-page-h2.png', import.meta.url))
const TIMEOUT_MS = 1000
const STREAMS = 10
const WAIT = { timeout: 30_000 }

interface Stream {
  opened: number
  /** Arrival times (ms since the stream was opened) and the Via each tick carried. */
  ticks: Array<{ at: number, via: string | null }>
}

/** The navigation, both event streams, a fetch, the download and the 504 all went over h2. */
async function everythingOverHttp2 (t: Test, page: Page, app: RunningExample): Promise<void> {
  t.equal(await page.getAttribute('#page-proto', 'data-proto'), 'h2', 'the navigation went over h2')
  await page.waitForSelector('#sse-proto[data-proto]', WAIT)
  t.equal(await page.getAttribute('#sse-proto', 'data-proto'), 'h2', 'the proxied ticker reached the ingress over h2')
  t.equal(await page.textContent('#sse-proto'), 'HTTP/2')
  await page.waitForSelector('#clock-proto[data-proto]', WAIT)
  t.equal(await page.getAttribute('#clock-proto', 'data-proto'), 'h2', 'the in-app stream too')
  await page.click('#auth-with')
  await page.waitForSelector('#auth-proto[data-proto]', WAIT)
  t.equal(await page.getAttribute('#auth-proto', 'data-proto'), 'h2', 'a fetch shows its resource timing protocol')
  t.match(await page.textContent('#auth-body'), /"authorizationSeen":true/, 'the upstream answered it')
  await page.waitForSelector('#download-percent[data-state="done"], #download-percent[data-state="error"]', WAIT)
  t.equal(await page.textContent('#download-percent'), '100 %', 'the streamed download completed over h2')
  await page.waitForSelector('#download-proto[data-proto]', WAIT)
  t.equal(await page.getAttribute('#download-proto', 'data-proto'), 'h2')
  // ExampleLines.waitFor rejects, naming the line, after 10 s.
  await app.lines.waitFor(/\[files\] download of 16777216 bytes sent/)
  await page.waitForSelector('#slow-status[data-state="error"]', WAIT)
  t.equal(await page.textContent('#slow-status'), '504 Gateway Timeout', 'the deadline answered the slow call over h2')
  await page.waitForSelector('#slow-proto[data-proto]', WAIT)
  t.equal(await page.getAttribute('#slow-proto', 'data-proto'), 'h2')
  await app.lines.waitFor(/\[files\] \/slow cancelled by the caller after \d+ ms/)
}

/** Opens `count` EventSources on the page's origin; they are kept in `globalThis.streams` / `sources`. */
async function openEventSources (page: Page, count: number): Promise<void> {
  await page.evaluate(([count]) => {
    const streams: Stream[] = []
    const sources: EventSource[] = []
    for (let i = 0; i < count; i++) {
      const stream: Stream = { opened: performance.now(), ticks: [] }
      const source = new EventSource('/live/ticker')
      source.addEventListener('tick', (event) => {
        stream.ticks.push({ at: performance.now() - stream.opened, via: JSON.parse(event.data).via })
      })
      streams.push(stream)
      sources.push(source)
    }
    Object.assign(globalThis, { streams, sources })
  }, [count])
}

/** STREAMS more event streams all get events past the timeout, over h2, and none is cut or reconnects. */
async function manyEventStreamsOnOneOrigin (t: Test, page: Page, app: RunningExample): Promise<void> {
  // The page already holds two streams (ticker, clock): over HTTP/1.1 only 4 of these would get a connection.
  await openEventSources(page, STREAMS)
  await page.waitForFunction(([timeout]) => ((globalThis as any).streams as Stream[])
    .every(stream => stream.ticks.filter(tick => tick.at > timeout).length >= 2), [TIMEOUT_MS], WAIT)
  const streams: Stream[] = await page.evaluate(() => (globalThis as any).streams)
  t.equal(streams.length, STREAMS)
  for (const [i, stream] of streams.entries()) {
    t.ok(stream.ticks.some(tick => tick.at > TIMEOUT_MS), `stream ${i}: events after the ${TIMEOUT_MS} ms timeout`)
    t.ok(stream.ticks.every(tick => tick.via === '2 streamline-example'), `stream ${i}: the upstream saw it arrive over h2`)
  }
  // The page's own ticker plus these: the live service saw every one open, none reconnect.
  const opened = await app.lines.waitForCount(/\[live\] ticker stream opened/, STREAMS + 1)
  t.equal(opened.length, STREAMS + 1, 'the upstream saw each stream open once')
  t.ok(opened.every(line => line.includes('(from event 0)')), 'no stream resumed from a Last-Event-ID: none was cut')
  await page.evaluate(() => { for (const source of (globalThis as any).sources) source.close() })
  const closed = await app.lines.waitForCount(/\[live\] ticker stream closed/, STREAMS)
  t.equal(closed.length, STREAMS, 'closing them in the browser (RST_STREAM) reached the upstream')
}

/** The WebSocket echoes, its upgrade having reached the ingress as HTTP/1.1. */
async function webSocketOverHttp1Upgrade (t: Test, page: Page, app: RunningExample): Promise<void> {
  await page.waitForSelector('#ws-state[data-state="open"]', WAIT)
  t.equal(await page.textContent('#ws-protocol'), 'chat.v2')
  await page.fill('#ws-input', 'hello over https')
  await page.click('#ws-send')
  await page.waitForSelector('#ws-log li.echo', WAIT)
  t.match(await page.textContent('#ws-log li.echo'), /← echo "hello over https" · \d+ ms round trip/)
  t.equal(await page.getAttribute('#ws-proto', 'data-proto'), 'http/1.1', 'the upgrade reached the ingress as HTTP/1.1')
  const [joined] = await app.lines.waitFor(/\[live\] chat client joined with subprotocol "(.*?)"/)
  t.match(joined, /"chat\.v2"$/, 'the live service saw the chat client join with chat.v2')
}

/** A screenshot, no unexpected page error, and a clean exit on SIGTERM with everything open. */
async function endsCleanly (t: Test, page: Page, pageErrors: string[], app: RunningExample): Promise<void> {
  await page.waitForFunction(() => Number(document.getElementById('sse-count')?.textContent) >= 3, null, WAIT)
  await mkdir(join(SCREENSHOT, '..'), { recursive: true })
  await page.screenshot({ path: SCREENSHOT, fullPage: true })
  // Chromium logs every 4xx/5xx fetch as a console error: the 504 above is expected.
  const asked = 'Failed to load resource: the server responded with a status of 504 '
  t.same(pageErrors.filter(message => !message.startsWith(asked)), [], 'no other error on the page')
  t.equal(app.child.exitCode, null, 'the example is still running')
  const exit = await within(15_000, app.stop(), 'the example\'s exit after SIGTERM')
  t.same(exit, { code: 0, signal: null }, 'and exits cleanly on SIGTERM, streams and WebSocket open')
}

test('over HTTPS/2, 10 EventSource streams on one origin all stream past the timeout and the WebSocket echoes', async (t) => {
  const app = await startExample(t, { HTTPS: '1', H2_WEBSOCKET: '0', DEADLINE_TIMEOUT_MS: String(TIMEOUT_MS), TICK_MS: '300', CLOCK_DELAY_MS: '1500', DOWNLOAD_MB: '16' })
  t.match(app.ingress, /^https:\/\/127\.0\.0\.1:\d+$/, 'the ingress URL is printed as https')
  t.ok(app.lines.lines.some(line => /certificate self-signed for localhost, 127\.0\.0\.1, ::1/.test(line)), 'a self-signed certificate was made')
  const { page, pageErrors } = await openPage(t, true)

  await page.goto(`${app.ingress}/`)
  await page.waitForSelector('#settings-line[data-state="loaded"]', WAIT)
  await page.click('#download-start')
  await page.click('#slow-call')

  await t.test('the page and its streams show HTTP/2', async (t) => { await everythingOverHttp2(t, page, app) })
  await t.test(`${STREAMS} more EventSource streams on the same origin all get events past the timeout`, async (t) => {
    await manyEventStreamsOnOneOrigin(t, page, app)
  })
  await t.test('WebSocket: the echo arrives, over an HTTP/1.1 upgrade (extended CONNECT off)', async (t) => {
    await webSocketOverHttp1Upgrade(t, page, app)
  })
  await endsCleanly(t, page, pageErrors, app)
})
