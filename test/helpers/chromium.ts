import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { chromium, type BrowserContext, type Page } from 'playwright-core'

/** Debian's Chromium (`apt-get install chromium`; `.ci/run` does it). */
export const CHROMIUM = '/usr/bin/chromium'

// As root, without a network: no sandbox, and none of Chromium's own background connections.
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync']

export interface OpenedPage {
  context: BrowserContext
  page: Page
  /** Uncaught exceptions and console errors of the page. */
  pageErrors: string[]
}

/**
 * Headless Chromium with a fresh profile, closed and removed at teardown. `untrustedTls`
 * accepts self-signed certificates (the tests' own). Asserts Chromium is there, so a missing
 * install fails the test instead of skipping it.
 */
export async function openPage (t: Test, untrustedTls = false): Promise<OpenedPage> {
  t.ok(existsSync(CHROMIUM), `${CHROMIUM} is installed (apt-get install chromium; .ci/run does it)`)
  // Playwright refuses --user-data-dir in args: a fresh profile goes to launchPersistentContext.
  const profile = await mkdtemp(join(tmpdir(), 'streamline-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: untrustedTls ? [...ARGS, '--ignore-certificate-errors'] : ARGS,
    viewport: { width: 1280, height: 1000 },
    ignoreHTTPSErrors: untrustedTls
  })
  t.teardown(async () => {
    await context.close()
    await rm(profile, { recursive: true, force: true })
  })
  const page = context.pages()[0] ?? await context.newPage()
  const pageErrors: string[] = []
  page.on('pageerror', (err) => pageErrors.push(err.message))
  page.on('console', (message) => { if (message.type() === 'error') pageErrors.push(message.text()) })
  return { context, page, pageErrors }
}
