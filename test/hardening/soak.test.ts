// The soak of `npm run soak` (soak/run.js), shortened: 600 mixed failures against one proxy
// process (built dist/, as `npm test` builds first). Each operation checks what its client got
// and what the upstream saw; this test checks that every kind ran without an unexpected outcome
// and that the proxy process came back to its baseline: descriptors, upstream connections,
// client connections and active resources exactly, heap within 2 %.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { within } from '../helpers/bounded.js'

interface Snapshot {
  fds: Record<string, number>
  upstream: number
  connections: number
  handles: Record<string, number>
  heapUsed: number
}

interface SoakResult {
  ok: boolean
  alive: boolean
  leaked: boolean
  unexpected: number
  skipped: number
  heapGrowth: number
  before: Snapshot
  after: Snapshot
  results: Record<string, { ran: number, unexpected: number, errors: Record<string, number> }>
  drain: { ms: number, failures: string[] }
}

const root = fileURLToPath(new URL('../..', import.meta.url))

async function soak (t: Test, operations: number): Promise<{ code: number | null, output: string }> {
  const child = spawn(process.execPath, ['soak/run.js'], {
    cwd: root,
    env: { ...process.env, SOAK_OPERATIONS: String(operations), SOAK_WARMUP: '300', SOAK_JSON: '1' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { output += chunk })
  const [code] = await within(90_000, once(child, 'close'), 'the soak process exiting') as [number | null]
  return { code, output }
}

t.test('600 mixed failures against one proxy process leave nothing behind', async (t) => {
  const { code, output } = await soak(t, 600)
  const line = output.split('\n').find((l) => l.startsWith('SOAK_RESULT '))
  if (line === undefined) {
    t.fail(`the soak printed no result:\n${output}`)
    return
  }
  const result = JSON.parse(line.slice('SOAK_RESULT '.length)) as SoakResult
  t.ok(result.alive, 'the proxy process survived')
  t.equal(result.skipped, 0, 'every operation ran within the time budget')
  for (const [kind, r] of Object.entries(result.results)) {
    t.ok(r.ran > 0, `${kind}: ran ${r.ran} times`)
    t.same(r.errors, {}, `${kind}: every client and upstream outcome as expected`)
  }
  const { before, after } = result
  t.same(after.fds, before.fds, 'open file descriptors, by kind, back to baseline')
  t.equal(before.upstream, 0, 'no upstream connection before (the pool idled out)')
  t.equal(after.upstream, 0, 'none after: every upstream connection closed')
  t.equal(after.connections, 0, 'the proxy holds no client connection')
  t.same(after.handles, before.handles, 'active resources back to baseline')
  t.ok(result.heapGrowth <= 0.02, `heap after GC within 2 % (${(result.heapGrowth * 100).toFixed(2)} %)`)
  t.same(result.drain.failures, [], `the last phase, app.close() with streams, downloads and tunnels open: ${result.drain.ms} ms, every client saw what a drain promises`)
  t.ok(result.drain.ms < 1500 + 1000, 'close() within drainTimeout + 1 s')
  t.equal(code, 0, 'the soak passed')
  t.ok(result.ok && !result.leaked && result.unexpected === 0, 'and says so')
})
