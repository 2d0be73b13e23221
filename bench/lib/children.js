// The server processes a bench starts: started and stopped one by one, asked questions over IPC,
// and all killed by PID when a bench throws.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { pin } from './pinning.js'

// Server scripts are named relative to bench/ (soak/run.js reaches its own with '../soak/').
const benchDir = new URL('..', import.meta.url)
const children = new Set()

/** Adds a child process started elsewhere (nginx, caddy) to the ones killed on a crash. */
export function trackChild (child) {
  children.add(child)
  child.once('exit', () => children.delete(child))
}

// Worker processes of a server whose CPU and memory count as its own (nginx: master + worker).
const workersOf = new Map()

export function setWorkers (pid, workers) {
  workersOf.set(pid, workers)
}

export function workers (pid) {
  return workersOf.get(pid) ?? []
}

/**
 * Starts a server script of bench/ in its own process, so the load generator (this process) never
 * shares an event loop with the server under test. The child answers { type: 'ready', port, ports }
 * (`urls`: one per port, for a server listening on several).
 */
export async function startServer (script, env = {}, execArgv = []) {
  const child = fork(new URL(script, benchDir), [], {
    env: { ...process.env, ...env },
    execArgv,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  trackChild(child)
  const [message] = await Promise.race([
    once(child, 'message'),
    once(child, 'exit').then(([code]) => { throw new Error(`${script} exited with ${code} before it was ready`) })
  ])
  pin(child.pid, /^server-(grpc-|resume-)?upstream\.js$/.test(script) ? 'load' : 'server')
  const urls = (message.ports ?? [message.port]).map((port) => `http://127.0.0.1:${port}`)
  return { child, pid: child.pid, port: message.port, url: urls[0], urls }
}

/** Asks a server child to close (so a --cpu-prof child writes its profile), then kills it by PID. */
export async function stopServer (server) {
  const { child } = server
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.send({ type: 'stop' })
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

/** Last resort when a bench throws: kill every child still running, by PID. */
export function killAllServers () {
  for (const child of children) {
    for (const pid of [...workers(child.pid), child.pid]) {
      try { process.kill(pid, 'SIGKILL') } catch {}
    }
  }
}

/** Sends a request to a child and waits for the answer of the same type (e.g. 'mem'). */
export async function ask (server, type) {
  const answer = new Promise((resolve) => {
    const onMessage = (message) => {
      if (message.type !== type) return
      server.child.off('message', onMessage)
      resolve(message)
    }
    server.child.on('message', onMessage)
  })
  server.child.send({ type })
  return answer
}
