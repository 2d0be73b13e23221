// The page's replicas card in Chromium: which replica served each request, a replica stopped
// and started from its button, its state from /metrics, and no request failing meanwhile.
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import type { Page } from 'playwright-core'
import { openPage } from '../helpers/chromium.js'
import { startExample } from '../helpers/example-app.js'

const SCREENSHOT = fileURLToPath(new URL('../artifacts/replicas-card.png', import.meta.url))
const WAIT = { timeout: 30_000 }

async function state (page: Page, replica: string): Promise<string | null> {
  return await page.getAttribute(`#replicas-table tr[data-replica="${replica}"]`, 'data-state')
}

test('the replicas card: a replica stopped from its button, ejected, started again; no request fails', async (t) => {
  const app = await startExample(t)
  const { page, pageErrors } = await openPage(t)
  await page.goto(`${app.ingress}/`)
  await page.waitForFunction(() => document.querySelectorAll('#replicas-table tr[data-state="serving"]').length === 3, null, WAIT)
  // Requests keep going, spread over the replicas. Not over all three for sure: the page's own
  // ticker and chat count as in flight where they are open, and least-request never picks a
  // replica holding both while the other two hold none (both opened at once on page load can land on one replica).
  await page.waitForFunction(() => new Set([...document.querySelectorAll('#replicas-log li')].map(li => li.className).filter(name => name.startsWith('live-'))).size >= 2, null, WAIT)

  await page.click('#replicas-table tr[data-replica="live-2"] button')
  await page.waitForSelector('#replicas-table tr[data-replica="live-2"][data-running="false"]', WAIT)
  t.equal(await page.textContent('#replicas-table tr[data-replica="live-2"] button'), 'Start')
  const sentAtStop = Number(await page.textContent('#replicas-sent'))
  // Out of rotation: ejected once the balancer aimed 3 requests at it (usually first), or failed
  // by two health checks 5 s apart.
  await page.waitForSelector('#replicas-table tr[data-replica="live-2"]:is([data-state="ejected"], [data-state="unhealthy"])', { timeout: 60_000 })
  const sentWhileDown = Number(await page.textContent('#replicas-sent')) - sentAtStop
  t.ok(sentWhileDown > 0, `${sentWhileDown} requests went out while live-2 was down`)
  await mkdir(join(SCREENSHOT, '..'), { recursive: true })
  await page.locator('#replicas').screenshot({ path: SCREENSHOT })

  await page.click('#replicas-table tr[data-replica="live-2"] button')
  await page.waitForSelector('#replicas-table tr[data-replica="live-2"][data-running="true"]', WAIT)
  // Serving again: the newest request answered by live-2.
  await page.waitForFunction(() => document.querySelector('#replicas-log li')?.classList.contains('live-2'), null, { timeout: 60_000 })
  t.equal(await page.textContent('#replicas-failed'), '0', 'no request failed')
  t.equal(await page.locator('#replicas-log li.error').count(), 0, 'none logged as failed')
  // The table catches up within its next refresh (every second).
  await page.waitForSelector('#replicas-table tr[data-replica="live-2"][data-state="serving"]', WAIT)
  t.equal(await state(page, 'live-1'), 'serving')
  t.equal(await state(page, 'live-3'), 'serving')
  t.same(pageErrors, [], 'no error on the page')
  t.equal((await app.stop()).code, 0)
})
