// The example as `npm start` runs it, driven from outside with curl and undici: streams through
// the ingress outlive the deadline, a slow answer is cut at it, the auth hook guards its prefix,
// and SIGTERM shuts everything down with open streams ended cleanly.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { test, type Test } from 'tap'
import { Agent, request } from 'undici'
import WebSocket from 'ws'
import { startExample, type RunningExample } from '../helpers/example-app.js'
import { SseReader } from '../helpers/example-sse.js'
import { within } from '../helpers/bounded.js'

const TIMEOUT_MS = 1000
// A 2 GiB download cannot finish within a 1.5 s drain (that would take over 1.3 GiB/s through the
// proxy): it is still flowing when the drain ends, however quiet the machine.
const ENV = { DEADLINE_TIMEOUT_MS: String(TIMEOUT_MS), TICK_MS: '250', CLOCK_DELAY_MS: '1500', SLOW_MS: '5000', DOWNLOAD_MB: '2048', DRAIN_TIMEOUT_MS: '1500' }

/** curl -N: prints each chunk as it arrives, the way people check an SSE endpoint by hand. */
function curlStream (t: Test, url: string) {
  const curl = spawn('curl', ['--silent', '--no-buffer', url], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = once(curl, 'exit').then(([code]) => code as number | null)
  t.teardown(() => { if (curl.exitCode === null) curl.kill() })
  return { sse: new SseReader(curl.stdout), exited, curl }
}

/** How a body ended: 'end' (complete) or 'cut' (an error), within `ms`. */
async function ending (ms: number, done: Promise<unknown>, what: string): Promise<'end' | 'cut'> {
  return await within(ms, done.then(() => 'end' as const, () => 'cut' as const), `the end of ${what}`)
}

async function curlGetsTheTickerPastTheDeadline (t: Test, app: RunningExample): Promise<void> {
  const started = Date.now()
  const { sse, curl, exited } = curlStream(t, `${app.ingress}/live/ticker`)
  const events = await within(10_000, sse.waitForEvents(6), '6 ticker events at curl')
  const elapsed = Date.now() - started
  t.same(events.map(e => e.id), ['1', '2', '3', '4', '5', '6'], 'consecutive events, none lost or replayed')
  t.ok(elapsed > TIMEOUT_MS, `the 6th event arrived ${elapsed} ms after the request, beyond the ${TIMEOUT_MS} ms timeout`)
  curl.kill()
  await within(5000, exited, 'curl exiting')
  // ExampleLines.waitFor rejects, naming the line, after 10 s.
  const [, last] = await app.lines.waitFor(/\[live\] ticker stream closed after event (\d+)/)
  t.ok(Number(last) >= 6, `the upstream saw the stream close when curl left, after event ${last}`)
}

async function inAppStreamStartsAfterTheTimeout (t: Test, app: RunningExample): Promise<void> {
  const started = Date.now()
  const { sse, curl, exited } = curlStream(t, `${app.ingress}/events/clock`)
  const [first] = await within(10_000, sse.waitForEvents(1), 'a clock event at curl')
  t.equal(first.event, 'clock')
  t.ok(Date.now() - started >= 1500, 'its first event came after CLOCK_DELAY_MS (1500 ms), beyond the 1000 ms timeout, without a 504')
  curl.kill()
  await within(5000, exited, 'curl exiting')
}

async function slowAnswerCutAtTheDeadline (t: Test, app: RunningExample, agent: Agent): Promise<void> {
  const started = Date.now()
  const response = await within(10_000, request(`${app.ingress}/files/slow`, { dispatcher: agent }), 'the answer to /files/slow')
  const elapsed = Date.now() - started
  t.equal(response.statusCode, 504)
  const body = await within(5000, response.body.json(), 'the 504\'s body')
  t.match(body, { statusCode: 504, code: 'FST_STREAMLINE_DEADLINE_EXCEEDED', error: 'Gateway Timeout', message: /phase: response/ })
  // 1000 ms deadline; a generous upper bound for a loaded 2-core machine.
  t.ok(elapsed >= TIMEOUT_MS - 50 && elapsed < TIMEOUT_MS + 1500, `504 after ${elapsed} ms`)
  const [, cancelledAfter] = await app.lines.waitFor(/\[files\] \/slow cancelled by the caller after (\d+) ms/)
  t.ok(Number(cancelledAfter) < 5000, `the upstream was aborted after ${cancelledAfter} ms instead of finishing its 5 s`)
  t.notOk(app.lines.lines.some(line => line.includes('/slow answered')), 'the upstream never answered')
}

async function authHookGuardsItsPrefix (t: Test, app: RunningExample, agent: Agent): Promise<void> {
  const denied = await within(10_000, request(`${app.ingress}/private/report`, { dispatcher: agent }), 'the answer without a token')
  t.equal(denied.statusCode, 401)
  t.equal(denied.headers['www-authenticate'], 'Bearer realm="demo"')
  t.match(await within(5000, denied.body.json(), 'the 401\'s body'), { statusCode: 401, code: 'DEMO_UNAUTHORIZED', error: 'Unauthorized' })
  const allowed = await within(10_000, request(`${app.ingress}/private/report`, { dispatcher: agent, headers: { authorization: 'Bearer demo-token' } }),
    'the answer with the token')
  t.equal(allowed.statusCode, 200)
  t.match(await within(5000, allowed.body.json(), 'the 200\'s body'), { authorizationSeen: true })
  // The upstream's log line travels through the child's stdout, maybe after the response.
  await app.lines.waitFor(/\/private\/report served/)
  const served = app.lines.lines.filter(line => line.includes('/private/report served'))
  t.same(served, ['[files] /private/report served (authorization header present)'], 'only the authorized request reached the upstream')
}

async function sigtermDrainsEverything (t: Test, app: RunningExample, agent: Agent): Promise<void> {
  const ticker = curlStream(t, `${app.ingress}/live/ticker`)
  const clock = curlStream(t, `${app.ingress}/events/clock`)
  await within(10_000, Promise.all([ticker.sse.waitForEvents(1), clock.sse.waitForEvents(1)]), 'an event of each stream at curl')
  const socket = new WebSocket(`${app.ingress.replace('http', 'ws')}/live/chat`, ['chat.v2'])
  t.teardown(() => socket.terminate())
  await within(10_000, once(socket, 'open'), 'the WebSocket opening')
  const socketClosed = once(socket, 'close')
  const download = await within(10_000, request(`${app.ingress}/files/download`, { dispatcher: agent }), 'the head of the download')
  t.equal(download.statusCode, 200)
  download.body.resume()
  const downloadDone = once(download.body, 'end')
  downloadDone.catch(() => {})

  const started = Date.now()
  const exit = await within(15_000, app.stop(), 'the example\'s exit after SIGTERM')
  t.same(exit, { code: 0, signal: null }, 'exit code 0')
  t.ok(Date.now() - started < 8000, `exited ${Date.now() - started} ms after SIGTERM, well inside the 10 s grace`)
  t.equal(await within(5000, ticker.exited, 'curl exiting (ticker)'), 0, 'curl saw the proxied SSE stream end cleanly (exit 0, not 18)')
  t.equal(await within(5000, clock.exited, 'curl exiting (clock)'), 0, 'curl saw the in-app SSE stream end cleanly')
  // The ingress drains before the demo services stop: the 1001 comes from the ingress's own
  // tunnel drain (no reason text), not from the live service ('server shutting down').
  const [code, reason] = await within(5000, socketClosed, 'the WebSocket\'s close') as [number, Buffer]
  t.equal(code, 1001, 'the WebSocket got a 1001 close frame from the draining ingress')
  t.equal(String(reason), '', 'the proxy\'s own close frame')
  t.equal(await ending(5000, downloadDone, 'the download'), 'cut', 'the unfinished download was cut, never ended as if complete')
  t.ok(app.lines.lines.includes('stopped'), 'the app reported a complete shutdown')
  t.notOk(app.lines.lines.some(line => line.includes('killed by timeout')), 'close-with-grace did not have to force it')
}

test('the example ingress, from the outside', async (t) => {
  const app = await startExample(t, ENV)
  const agent = new Agent()
  t.teardown(() => agent.destroy())
  t.test('curl -N gets the proxied ticker event by event, past the deadline', async (t) => { await curlGetsTheTickerPastTheDeadline(t, app) })
  t.test('the in-app SSE route in streaming mode starts after the timeout', async (t) => { await inAppStreamStartsAfterTheTimeout(t, app) })
  t.test('a slow answer is cut at the deadline and the upstream stops working', async (t) => { await slowAnswerCutAtTheDeadline(t, app, agent) })
  t.test('the auth hook answers 401 on its prefix without contacting the upstream', async (t) => { await authHookGuardsItsPrefix(t, app, agent) })
  t.test('SIGTERM: streams end cleanly, WebSockets get 1001, a download in flight is cut, exit code 0', async (t) => {
    await sigtermDrainsEverything(t, app, agent)
  })
})
