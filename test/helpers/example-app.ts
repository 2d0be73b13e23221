import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { ExampleLines } from './example-lines.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
}

export interface RunningExample {
  /** Base URLs as the app printed them, e.g. http://127.0.0.1:41234 */
  ingress: string
  live: string
  files: string
  /** The ingress's gRPC listener (h2c), host:port as printed. */
  grpc: string
  /** Everything the process printed (stderr lines prefixed with "stderr: "). */
  lines: ExampleLines
  child: ChildProcess
  exited: Promise<Exit>
  /** SIGTERM, as Ctrl-C or a process manager would, then the exit. */
  stop: () => Promise<Exit>
}

/**
 * Runs the example exactly as `npm start` does (`node example-app/start.js`), on free ports,
 * and reads the URLs from what it prints. SIGKILLed at teardown if a test left it running.
 */
export async function startExample (t: Test, env: Record<string, string> = {}): Promise<RunningExample> {
  const child = spawn(process.execPath, ['example-app/start.js'], {
    cwd: ROOT,
    env: { ...process.env, INGRESS_PORT: '0', LIVE_PORT: '0', FILES_PORT: '0', GRPC_PORT: '0', GRPC_UPSTREAM_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines = new ExampleLines()
  createInterface({ input: child.stdout! }).on('line', lines.push)
  createInterface({ input: child.stderr! }).on('line', (line) => lines.push(`stderr: ${line}`))
  const exited = once(child, 'exit').then(([code, signal]) => ({ code, signal }) as Exit)
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL')
    await exited
  })
  const url = async (name: string): Promise<string> => (await lines.waitFor(new RegExp(`^\\s+${name}\\s+(https?://127\\.0\\.0\\.1:\\d+)`), 30_000))[1]
  return {
    ingress: await url('ingress'),
    live: await url('live upstream'),
    files: await url('files upstream'),
    grpc: (await lines.waitFor(/^\s+grpc ingress\s+(127\.0\.0\.1:\d+)/, 30_000))[1],
    lines,
    child,
    exited,
    stop: async () => {
      child.kill('SIGTERM')
      return await exited
    }
  }
}
