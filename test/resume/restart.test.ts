// `sseResume` across a real restart: the upstream process is killed (SIGKILL) in the middle of its
// stream and started again on the same port; the client's stream goes on, every id once, in order.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { proxyApp } from '../helpers/proxy-servers.js'
import { Stream } from '../helpers/stream-client.js'
import { within } from '../helpers/bounded.js'
import { ExampleLines } from '../helpers/example-lines.js'

const SCRIPT = fileURLToPath(new URL('../helpers/sse-child.js', import.meta.url))

async function start (t: Test, port: number): Promise<{ port: number, lines: ExampleLines, kill: () => Promise<void> }> {
  const child = spawn(process.execPath, [SCRIPT, String(port)], { stdio: 'pipe' })
  const lines = new ExampleLines()
  createInterface({ input: child.stdout }).on('line', lines.push)
  const exited = once(child, 'exit')
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  }
  t.teardown(kill)
  const listening = Number((await lines.waitFor(/^listening (\d+)$/, 30_000))[1])
  return { port: listening, lines, kill }
}

function ids (body: string): number[] {
  return [...body.matchAll(/^id: (\d+)$/gm)].map(match => Number(match[1]))
}

t.test('the upstream process killed mid-stream and restarted: the stream goes on, no id missing or repeated', async (t) => {
  const first = await start(t, 0)
  const { url } = await proxyApp(t, { upstream: `http://127.0.0.1:${first.port}`, sseResume: { attempts: 6, gap: 20_000 } })
  const client = new Stream(`${url}/feed`)
  await within(10_000, client.until(body => ids(body).includes(5)), () => `the client got id 5; it has ${JSON.stringify(client.body.slice(-200))}`)
  await first.kill()
  const second = await start(t, first.port)
  const [, resumedFrom] = await second.lines.waitFor(/^request (.+)$/, 20_000)
  const last = Number(resumedFrom)
  t.ok(last >= 5, `the resume request asked from the last relayed id (${resumedFrom})`)
  await within(10_000, client.until(body => ids(body).includes(last + 5)), () => `the client got id ${last + 5}; it has ${JSON.stringify(client.body.slice(-200))}`)
  const got = ids(client.body)
  t.same(got, got.map((_id, i) => i + 1), 'every id once, in order')
  t.match(client.body, /^(id: \d+\ndata: event \d+\n\n)+$/, 'only whole events')
  t.equal(client.ending, null, 'the client\'s stream is still open')
})
