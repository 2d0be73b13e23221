import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { ExampleLines } from './example-lines.js'

/** `endless-upstream.js` running in its own process; see that file for its routes and lines. */
export interface ChildUpstream {
  url: string
  port: number
  /** What it printed: `open /sse`, `closed /sse after 12 writes`, `finished /slow after 0 writes`... */
  lines: ExampleLines
  /** Sends a command line to its stdin (`more`). */
  send: (command: string) => void
  child: ChildProcessWithoutNullStreams
}

const SCRIPT = fileURLToPath(new URL('./endless-upstream.js', import.meta.url))

export async function childUpstream (t: Test): Promise<ChildUpstream> {
  const child = spawn(process.execPath, [SCRIPT], { stdio: 'pipe' })
  const lines = new ExampleLines()
  createInterface({ input: child.stdout }).on('line', lines.push)
  createInterface({ input: child.stderr }).on('line', (line) => lines.push(`stderr: ${line}`))
  const exited = once(child, 'exit')
  t.teardown(async () => {
    // Closing its stdin makes it exit; SIGKILL only if it did not.
    child.stdin.end()
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    if (child.exitCode === null && child.signalCode === null) await exited
    clearTimeout(timer)
  })
  const port = Number((await lines.waitFor(/^listening (\d+)$/, 30_000))[1])
  return { url: `http://127.0.0.1:${port}`, port, lines, send: (command) => child.stdin.write(`${command}\n`), child }
}
