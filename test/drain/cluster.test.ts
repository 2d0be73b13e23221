// The README's node:cluster recipe (example-app/cluster.js), run as written: a primary and one
// worker per core, each the example's buildIngress() in front of an upstream in another process
// whose streams never end. SIGTERM to the primary drains every worker and all of them exit 0.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { availableParallelism } from 'node:os'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { test } from 'tap'
import { childUpstream } from '../helpers/child-upstream.js'
import { ExampleLines } from '../helpers/example-lines.js'
import { refused, Stream } from '../helpers/stream-client.js'
import { within } from '../helpers/bounded.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const DRAIN = 1500

async function freePort (): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

test('SIGTERM to the cluster primary drains every worker; all exit 0 within drainTimeout + a few seconds', async (t) => {
  const upstream = await childUpstream(t)
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const primary = spawn(process.execPath, ['example-app/cluster.js'], {
    cwd: ROOT,
    env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), LIVE_PORT: String(upstream.port), FILES_PORT: String(upstream.port), DRAIN_TIMEOUT_MS: String(DRAIN), LOG_LEVEL: 'error' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines = new ExampleLines()
  createInterface({ input: primary.stdout }).on('line', lines.push)
  createInterface({ input: primary.stderr }).on('line', (line) => lines.push(`stderr: ${line}`))
  const exited = once(primary, 'exit')
  const workers: number[] = []
  t.teardown(async () => {
    for (const pid of workers) if (alive(pid)) process.kill(pid, 'SIGKILL')
    if (primary.exitCode === null && primary.signalCode === null) {
      primary.kill('SIGKILL')
      await exited
    }
  })
  const count = availableParallelism()
  const listening = await lines.waitForCount(/^worker \d+ listening$/, count, 30_000)
  workers.push(...listening.map(line => Number(/\d+/.exec(line)?.[0])))
  t.equal(workers.length, count, `${count} workers listening`)

  // Round-robin spreads the connections over the workers: several of each kind.
  const streams = Array.from({ length: 2 * count }, (_v, i) => new Stream(`${url}/${i % 2 === 0 ? 'live/sse' : 'files/download'}`))
  await within(10_000, Promise.all(streams.map(s => s.until(body => body.length > 2000))), 'the first 2000 bytes of every stream')

  const started = Date.now()
  primary.kill('SIGTERM')
  const [code, signal] = await within(DRAIN + 10_000, exited, 'the primary\'s exit after SIGTERM')
  const elapsed = Date.now() - started
  t.same({ code, signal }, { code: 0, signal: null }, 'the primary exited 0')
  t.ok(elapsed >= DRAIN - 50 && elapsed < DRAIN + 5000, `${elapsed} ms after SIGTERM (drainTimeout ${DRAIN} ms): downloads had their time, nothing waited for close-with-grace's 15 s`)
  const exits = lines.lines.filter(line => /^worker \d+ exited/.test(line))
  t.same(exits.sort(), workers.map(pid => `worker ${pid} exited (0)`).sort(), 'every worker exited 0, none was re-forked')
  t.ok(workers.every(pid => !alive(pid)), 'no worker process is left')
  t.notOk(lines.lines.some(line => line.includes('killed by timeout')), 'close-with-grace did not have to force any worker')

  for (const [i, stream] of streams.entries()) {
    if (i % 2 === 0) {
      t.equal(await within(5000, stream.done, `the end of event stream ${i / 2 + 1}`), 'end', `event stream ${i / 2 + 1} ended cleanly`)
      t.match(stream.body, /\n\nretry: 1000\n\n$/, '  at an event boundary, then a retry field')
      t.ok(stream.endedAt - started < DRAIN, '  before drainTimeout')
    } else {
      t.equal(await within(5000, stream.done, `the end of download ${(i + 1) / 2}`), 'cut', `download ${(i + 1) / 2} was cut`)
      t.ok(stream.endedAt - started >= DRAIN - 50, '  at drainTimeout')
    }
  }
  t.equal(await refused(url), 'ECONNREFUSED', 'nothing listens on the port any more')
  const closed = await upstream.lines.waitForCount(/^closed \/(sse|download) /, 2 * count)
  t.same(closed.map(line => line.split(' ')[1]).sort(), [...Array(count).fill('/download'), ...Array(count).fill('/sse')],
    'the upstream saw each of its streams closed by the ingress')
  t.equal(upstream.child.exitCode, null, 'the upstream itself is still running')
})
