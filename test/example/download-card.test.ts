// The example's download card claims the download runs "long after the timeout": the files
// service paces it (DOWNLOAD_MB_PER_S), so that through the ingress, with a real client, bytes
// still flow seconds after the deadline's timeout and the body completes intact.
import { createHash } from 'node:crypto'
import { test } from 'tap'
import { Agent, request } from 'undici'
import { startExample } from '../helpers/example-app.js'

const MB = 1024 * 1024
const TIMEOUT_MS = 1000
const DOWNLOAD_MB = 6
const MB_PER_S = 2 // 3 s in all: 2 s past the timeout
const PATTERN = Buffer.alloc(64 * 1024, 'fastify-streamline ')

interface Received {
  status: number
  bytes: number
  sha256: string
  /** Bytes received by the time the timeout had passed, and after one more second. */
  byTimeout: number
  afterTimeoutPlus1s: number
  elapsedMs: number
}

/** GETs the download through the ingress, noting when its bytes arrived. */
async function download (url: string): Promise<Received> {
  const agent = new Agent()
  try {
    const started = Date.now()
    // Bounded waits: a stalled head or body fails in seconds, naming which.
    const response = await request(url, { dispatcher: agent, headersTimeout: 10_000, bodyTimeout: 10_000 })
    const hash = createHash('sha256')
    let bytes = 0
    let byTimeout = 0
    let afterTimeoutPlus1s = 0
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      const at = Date.now() - started
      bytes += chunk.length
      hash.update(chunk)
      if (at <= TIMEOUT_MS) byTimeout = bytes
      if (at > TIMEOUT_MS + 1000) afterTimeoutPlus1s += chunk.length
    }
    return { status: response.statusCode, bytes, sha256: hash.digest('hex'), byTimeout, afterTimeoutPlus1s, elapsedMs: Date.now() - started }
  } finally {
    await agent.destroy()
  }
}

function expectedSha256 (total: number): string {
  const hash = createHash('sha256')
  for (let sent = 0; sent < total; sent += PATTERN.length) hash.update(PATTERN.subarray(0, Math.min(PATTERN.length, total - sent)))
  return hash.digest('hex')
}

test('the paced download still flows after the timeout and completes intact', async (t) => {
  const app = await startExample(t, { DEADLINE_TIMEOUT_MS: String(TIMEOUT_MS), DOWNLOAD_MB: String(DOWNLOAD_MB), DOWNLOAD_MB_PER_S: String(MB_PER_S) })
  await app.lines.waitFor(/^\s+download\s+6 MB at 2 MB\/s \(about 3\.0 s\)$/)
  const got = await download(`${app.ingress}/files/download`)

  t.equal(got.status, 200, 'the deadline did not answer instead of the upstream')
  t.equal(got.bytes, DOWNLOAD_MB * MB, 'every byte arrived')
  t.equal(got.sha256, expectedSha256(DOWNLOAD_MB * MB), 'the bytes are the service\'s pattern, in order')
  t.ok(got.byTimeout < got.bytes, `only ${got.byTimeout} of ${got.bytes} bytes had arrived when the ${TIMEOUT_MS} ms timeout passed`)
  t.ok(got.afterTimeoutPlus1s > 0, `${got.afterTimeoutPlus1s} bytes arrived more than 1 s after the timeout`)
  t.ok(got.elapsedMs > TIMEOUT_MS + 1000, `the body ended ${got.elapsedMs} ms after the request`)
  const [, sentMs] = await app.lines.waitFor(new RegExp(`\\[files\\] download of ${DOWNLOAD_MB * MB} bytes sent in (\\d+) ms`))
  t.ok(Number(sentMs) > TIMEOUT_MS + 1000, `the files service sent it over ${sentMs} ms, at its pace`)
  t.notOk(app.lines.lines.some(line => line.includes('download cut')), 'the upstream never saw the download cut')
  t.equal((await app.stop()).code, 0)
})

test('with the defaults the download runs several seconds past the timeout', async (t) => {
  const app = await startExample(t)
  await app.lines.waitFor(/^\s+download\s+256 MB at 32 MB\/s \(about 8\.0 s\)$/)
  const agent = new Agent()
  t.teardown(async () => await agent.destroy())
  const response = await request(`${app.ingress}/api/settings`, { dispatcher: agent })
  const settings = await response.body.json() as { deadline: { timeout: number }, demo: { downloadMb: number, downloadMbPerS: number } }
  const { downloadMb, downloadMbPerS } = settings.demo
  const pastTimeoutMs = (downloadMb / downloadMbPerS) * 1000 - settings.deadline.timeout
  t.ok(pastTimeoutMs >= 3000, `${downloadMb} MB at ${downloadMbPerS} MB/s end ${pastTimeoutMs} ms after the ${settings.deadline.timeout} ms timeout`)
  t.equal((await app.stop()).code, 0)
})
