// The example's gRPC part as a user runs it: `npm start`, then `node example-app/grpc-client.js`
// against the ingress's gRPC listener (h2c), and a raw HTTP/2 client for what is on the wire.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { connect, constants } from 'node:http2'
import { fileURLToPath } from 'node:url'
import { test, type Test } from 'tap'
import { startExample, type RunningExample } from '../helpers/example-app.js'
import { ExampleLines } from '../helpers/example-lines.js'
import { ANSWERED, within } from '../helpers/bounded.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
// Short, so that the tests are: a Quote slower than this gets DEADLINE_EXCEEDED from the ingress.
const TIMEOUT_MS = 1000
// Longer than the timeout: the ticker's first tick (and its response head) comes after it, which
// only a route in streaming mode allows.
const TICK_MS = 1200
const MAX_STREAM_MS = 4000

interface ClientRun { code: number | null, stdout: string, stderr: string }

/** `node example-app/grpc-client.js ...args` to the example's gRPC listener, its output line by line as it comes. */
function start (t: Test, app: RunningExample, ...args: string[]): { lines: ExampleLines, exited: Promise<ClientRun> } {
  const child = spawn(process.execPath, ['example-app/grpc-client.js', ...args, '--address', app.grpc], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  const lines = new ExampleLines()
  createInterface({ input: child.stdout }).on('line', lines.push)
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const exited = once(child, 'exit').then(([code]) => ({ code: code as number | null, stdout: lines.lines.map(line => `${line}\n`).join(''), stderr }))
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { lines, exited }
}

/** The client's whole run; bounded (SIGKILLed at teardown if it outlives the bound). */
async function client (t: Test, app: RunningExample, ...args: string[]): Promise<ClientRun> {
  return await within(25_000, start(t, app, ...args).exited, `grpc-client.js ${args.join(' ')} to exit`)
}

/** The ticks the client printed, with the ms after the call's start each arrived at. */
function ticks (stdout: string): Array<{ n: number, at: number }> {
  return [...stdout.matchAll(/^tick (\d+) STRM [\d.]+ at \+(\d+) ms$/gm)].map(m => ({ n: Number(m[1]), at: Number(m[2]) }))
}

async function example (t: Test): Promise<RunningExample> {
  return await startExample(t, { TICK_MS: String(TICK_MS), DEADLINE_TIMEOUT_MS: String(TIMEOUT_MS), MAX_STREAM_DURATION_MS: String(MAX_STREAM_MS) })
}

test('the example prints its gRPC listener and serves a unary call through it', async (t) => {
  const app = await example(t)
  t.match(app.lines.lines.join('\n'), /grpc ingress\s+127\.0\.0\.1:\d+\s+gRPC \(HTTP\/2 cleartext\)/, 'the banner names the gRPC listener')
  const run = await client(t, app, 'unary')
  t.match(run.stdout, /^quote STRM \d+(\.\d+)? at \+\d+ ms$/m, 'the client printed the answer')
  t.match(run.stdout, /^status 0 OK at /m, 'and its status')
  t.equal(run.code, 0)
  await app.lines.waitFor(/\[grpc\] Quote STRM answered/)
  t.same(await within(15_000, app.stop(), 'the example\'s exit'), { code: 0, signal: null })
})

test('the ticker streams ticks as they are sent; the client\'s deadline ends it, the service sees a cancel', async (t) => {
  const app = await example(t)
  // Shorter than MAX_STREAM_DURATION_MS, which would otherwise end it first.
  const run = await client(t, app, 'ticker', '--for', '3000')
  const got = ticks(run.stdout)
  t.ok(got.length >= 2, `ticks in 3 s at one per ${TICK_MS} ms, the first after the ${TIMEOUT_MS} ms timeout (got ${got.length}): ${run.stdout}`)
  t.same(got.map(tick => tick.n), got.map((_, i) => i + 1), 'numbered from 1, none missing')
  // Each arrives when it is sent, not all together at the end.
  t.ok(got[got.length - 1].at - got[0].at >= TICK_MS / 2, `spread over time: ${got.map(tick => tick.at).join(', ')} ms`)
  t.match(run.stdout, /^status 4 DEADLINE_EXCEEDED: Deadline exceeded after /m, 'the client\'s own deadline')
  t.equal(run.code, 1)
  await app.lines.waitFor(/\[grpc\] Watch STRM cancelled after \d+ ticks/)
})

test('the ingress\'s deadlines answer in gRPC: a late Quote gets status 4, a ticker past MAX_STREAM_DURATION_MS ends with 4', async (t) => {
  const app = await example(t)
  const late = await client(t, app, 'unary', '--delay', '5000')
  const lateStatus = /^status 4 DEADLINE_EXCEEDED: Request deadline exceeded \(phase: response, after \d+ ms\) \[FST_STREAMLINE_DEADLINE_EXCEEDED\] at \+(\d+) ms$/m.exec(late.stdout)
  t.ok(lateStatus, `the ingress's DEADLINE_EXCEEDED, its message from the ingress: ${late.stdout}`)
  t.ok(Number(lateStatus?.[1]) < 4000, `at the ingress's ${TIMEOUT_MS} ms deadline, long before the 5 s answer (${lateStatus?.[1]} ms)`)
  t.notMatch(late.stdout, /^quote /m, 'no answer')
  await app.lines.waitFor(/\[grpc\] Quote cancelled/)

  const long = await client(t, app, 'ticker', '--for', '15000')
  const got = ticks(long.stdout)
  t.ok(got.length >= 1, `ticks before the end (got ${got.length})`)
  const longStatus = /^status 4 DEADLINE_EXCEEDED: Request deadline exceeded \(phase: lifetime, after \d+ ms\) \[FST_STREAMLINE_DEADLINE_EXCEEDED\] at \+(\d+) ms$/m.exec(long.stdout)
  t.ok(longStatus, `the ingress ended the stream after its ticks, with a status: ${long.stdout}`)
  t.ok(Number(longStatus?.[1]) >= MAX_STREAM_MS - 100 && Number(longStatus?.[1]) < 12_000, `at MAX_STREAM_DURATION_MS (${longStatus?.[1]} ms)`)
  t.equal(long.stdout.trim().split('\n').pop(), longStatus?.[0], 'the status comes after the last tick')
  await app.lines.waitFor(/\[grpc\] Watch STRM cancelled after \d+ ticks/)
})

test('on the wire, the late Quote\'s answer is a trailers-only gRPC status, not JSON', async (t) => {
  const app = await example(t)
  const session = connect(`http://${app.grpc}`)
  t.teardown(() => { session.destroy() })
  // QuoteRequest { symbol: "STRM", delay_ms: 5000 } in protobuf, in one gRPC message frame.
  const message = Buffer.from([0x0a, 4, ...Buffer.from('STRM'), 0x10, 0x88, 0x27])
  const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message])
  const stream = session.request({
    [constants.HTTP2_HEADER_METHOD]: 'POST', [constants.HTTP2_HEADER_PATH]: '/demo.Ticker/Quote', 'content-type': 'application/grpc', te: 'trailers'
  })
  stream.end(frame)
  const chunks: Buffer[] = []
  stream.on('data', (chunk: Buffer) => chunks.push(chunk))
  const headers = await within(ANSWERED, new Promise<Record<string, unknown>>(resolve => stream.once('response', resolve)), 'the response head')
  const endedWithHead = await within(ANSWERED, new Promise<boolean>(resolve => stream.once('close', () => resolve(true))), 'the stream\'s end')
  t.ok(endedWithHead)
  t.equal(headers[':status'], 200)
  t.equal(headers['content-type'], 'application/grpc')
  t.equal(headers['grpc-status'], '4', 'DEADLINE_EXCEEDED in the head: trailers-only')
  t.match(String(headers['grpc-message']), /FST_STREAMLINE_DEADLINE_EXCEEDED/)
  t.equal(Buffer.concat(chunks).length, 0, 'no body: no JSON error')
  await app.lines.waitFor(/\[grpc\] Quote cancelled/)
})

test('Ctrl-C on the example ends an open ticker with UNAVAILABLE after its ticks, and the example exits cleanly', async (t) => {
  const app = await example(t)
  const run = start(t, app, 'ticker')
  // After the first tick, so that the end comes after messages, at a message boundary.
  await run.lines.waitFor(/^tick 1 /, 15_000)
  t.same(await within(15_000, app.stop(), 'the example\'s exit after SIGTERM'), { code: 0, signal: null })
  const { stdout, code } = await within(15_000, run.exited, 'the client\'s exit')
  t.ok(ticks(stdout).length >= 1, `a tick before the drain: ${stdout}`)
  t.match(stdout, /^status 14 UNAVAILABLE: the ingress is shutting down \[FST_STREAMLINE_PROXY_SHUTTING_DOWN\] at /m, 'a status gRPC clients retry')
  t.equal(stdout.trim().split('\n').pop()?.startsWith('status 14'), true, 'the status comes after the last tick')
  t.equal(code, 1)
  t.match(app.lines.lines.join('\n'), /\[grpc\] Watch STRM cancelled after \d+ ticks/, 'the service saw its call cancelled')
})
