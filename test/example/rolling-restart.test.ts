// The SSE card's rolling restart in Chromium: every live replica stopped and started in turn
// while the page's ticker streams. With the proxy's sseResume (the example's default) the
// ingress carries the stream from replica to replica: the EventSource never reconnects and its
// ids run on without a gap or a repeat, over HTTP/1.1 and HTTP/2. With SSE_RESUME=0 the same
// restart makes the browser reconnect, which the card counts.
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test, type Test } from 'tap'
import type { Page } from 'playwright-core'
import { openPage } from '../helpers/chromium.js'
import { startExample, type RunningExample } from '../helpers/example-app.js'
import { within } from '../helpers/bounded.js'

const WAIT = { timeout: 30_000 }
// Short ticks: a gap or a repeat at a cut shows up as soon as the next event arrives. The
// example's own 2 s timeout stays: the streams are older than it when the restart cuts them.
const ENV = { TICK_MS: '250' }
const REPLICAS = ['live-1', 'live-2', 'live-3']

interface Card {
  events: number
  reconnects: number
  missing: number
  repeated: number
}

async function card (page: Page): Promise<Card> {
  const read = async (id: string): Promise<number> => Number(await page.textContent(`#${id}`))
  return { events: await read('sse-count'), reconnects: await read('sse-reconnects'), missing: await read('sse-missing'), repeated: await read('sse-repeated') }
}

/** Opens the page, clicks "Rolling restart" once the ticker has streamed 12 events, and waits for "done" and 8 more events. */
async function rollingRestart (t: Test, app: RunningExample, untrustedTls: boolean, screenshot: string): Promise<{ before: Card, after: Card, pageErrors: string[] }> {
  const { page, pageErrors } = await openPage(t, untrustedTls)
  await page.goto(`${app.ingress}/`)
  // More events than the proxy's window of recent ids (8) before the first cut: a replica that
  // started its ids over would show as repeated ids, not be hidden by the proxy's duplicate check.
  await page.waitForFunction(() => Number(document.getElementById('sse-count')?.textContent) >= 12, null, WAIT)
  const before = await card(page)
  await page.click('#rolling-restart')
  await page.waitForSelector('#rolling-state:is([data-state="done"], [data-state="error"])', { timeout: 60_000 })
  t.match(await page.textContent('#rolling-state'), /^done: live-1, live-2, live-3 restarted and answering$/, 'the card reports the rolling restart done')
  for (const name of REPLICAS) {
    await app.lines.waitFor(new RegExp(`\\[replicas\\] ${name} stopped`))
    await app.lines.waitFor(new RegExp(`\\[replicas\\] ${name} started`))
  }
  const atDone = Number(await page.textContent('#sse-count'))
  // Events keep arriving after the last replica's restart (a reconnect takes the stream's 2 s retry).
  await page.waitForFunction((count) => Number(document.getElementById('sse-count')?.textContent) >= count + 8, atDone, WAIT)
  await page.waitForSelector('#sse-state[data-state="open"]', WAIT)
  const after = await card(page)
  await mkdir(join(screenshot, '..'), { recursive: true })
  await page.locator('#sse').screenshot({ path: screenshot })
  return { before, after, pageErrors }
}

/** What the live replicas saw: the page's stream opened, then carried on from an id each time it was cut. */
function resumedUpstream (t: Test, app: RunningExample): void {
  const opened = app.lines.lines.filter(line => line.includes('[live] ticker stream opened'))
  t.match(opened[0], /\(from event 0\)$/, 'the page opened its ticker once from the start')
  const resumed = opened.slice(1).map(line => Number(/\(from event (\d+)\)$/.exec(line)?.[1]))
  t.ok(resumed.length >= 1, `the stream was cut and taken up again (${resumed.length} times)`)
  t.ok(resumed.every(id => id > 0), `each time from the last event id relayed: ${resumed.join(', ')}`)
}

async function resumeOn (t: Test, env: Record<string, string>, untrustedTls: boolean, screenshot: string): Promise<void> {
  const app = await startExample(t, { ...ENV, ...env })
  const { before, after, pageErrors } = await rollingRestart(t, app, untrustedTls, screenshot)
  t.same({ ...before, events: 0 }, { events: 0, reconnects: 0, missing: 0, repeated: 0 }, 'a clean start')
  t.ok(after.events >= before.events + 8, `events kept arriving: ${before.events} before, ${after.events} after`)
  t.equal(after.reconnects, 0, 'the EventSource never reconnected')
  t.equal(after.missing, 0, 'no event id missing')
  t.equal(after.repeated, 0, 'no event id repeated')
  resumedUpstream(t, app)
  t.same(pageErrors, [], 'no error on the page')
  t.same(await within(15_000, app.stop(), 'the example\'s exit after SIGTERM'), { code: 0, signal: null })
}

const artifact = (name: string): string => fileURLToPath(new URL(`../artifacts/${name}`, import.meta.url))

test('rolling restart over HTTP/1.1 with sseResume: 0 reconnects, 0 missing, 0 repeated ids', async (t) => {
  await resumeOn(t, {}, false, artifact('rolling-restart-h1.png'))
})

test('rolling restart over HTTP/2 (HTTPS=1) with sseResume: 0 reconnects, 0 missing, 0 repeated ids', async (t) => {
  await resumeOn(t, { HTTPS: '1' }, true, artifact('rolling-restart-h2.png'))
})

test('rolling restart with SSE_RESUME=0: the card counts the browser\'s reconnects', async (t) => {
  const app = await startExample(t, { ...ENV, SSE_RESUME: '0' })
  const { after, pageErrors } = await rollingRestart(t, app, false, artifact('rolling-restart-off.png'))
  t.ok(after.reconnects > 0, `the EventSource reconnected ${after.reconnects} times`)
  const opened = app.lines.lines.filter(line => line.includes('[live] ticker stream opened'))
  t.ok(opened.length >= after.reconnects + 1, `the replicas saw each reconnect open a stream (${opened.length} opened)`)
  // Chromium logs nothing for an EventSource reconnect; the page itself raised nothing.
  t.same(pageErrors, [], 'no error on the page')
  t.same(await within(15_000, app.stop(), 'the example\'s exit after SIGTERM'), { code: 0, signal: null })
})
