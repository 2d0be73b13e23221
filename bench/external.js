// nginx and Caddy as comparison targets, from their Debian packages: installed with apt-get when
// missing and the suite runs as root, else skipped with a printed reason. Each runs as a child of
// the suite with a generated config, pid and log files under its own temp dir, on 127.0.0.1,
// pinned like the other servers under test, and is stopped by PID.
import { execFileSync, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pinnedCommand } from './lib/pinning.js'
import { setWorkers, trackChild, workers } from './lib/children.js'
import { wait } from './lib/time.js'

const installTried = new Map()

function which (binary) {
  try {
    // nginx lives in /usr/sbin, which a non-root PATH often lacks
    const env = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` }
    return execFileSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8', env }).trim() || null
  } catch {
    return null
  }
}

/** The binary's path, installing `pkg` once if needed; else null with the reason in `skipped`. */
function ensureBinary (binary, pkg, skipped) {
  let path = which(binary)
  if (path) return path
  if (process.getuid?.() !== 0) {
    skipped.set(binary, `${binary} not installed and not running as root (run: apt-get install -y ${pkg})`)
    return null
  }
  if (!installTried.has(pkg)) {
    console.log(`installing ${pkg}: apt-get install -y ${pkg}`)
    try {
      execFileSync('apt-get', ['install', '-y', pkg], {
        stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 300_000
      })
      installTried.set(pkg, null)
    } catch (err) {
      installTried.set(pkg, `apt-get install -y ${pkg} failed: ${err.message.split('\n')[0]}`)
    }
  }
  path = which(binary)
  if (!path) skipped.set(binary, installTried.get(pkg) ?? `${binary} still missing after installing ${pkg}`)
  return path
}

/**
 * A free port on 127.0.0.1 for a config file. nginx and Caddy take a port in their config, not
 * port 0, so one is picked here and released; another process could take it in between, which
 * only makes that target fail to start (it is then reported, not measured).
 */
async function freePort () {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  await once(server, 'close')
  return port
}

/** Resolves once `port` accepts a connection; bounded to about 10 s, fails early if `child` exits. */
async function waitForPort (port, child, name) {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited with ${child.exitCode ?? child.signalCode}`)
    const connected = await new Promise((resolve) => {
      const socket = createConnection({ port, host: '127.0.0.1' })
      socket.once('connect', () => { socket.destroy(); resolve(true) })
      socket.once('error', () => resolve(false))
    })
    if (connected) return
    await wait(50)
  }
  throw new Error(`${name} did not listen on 127.0.0.1:${port} within 10 s`)
}

/** PIDs of the direct children of `pid` (nginx's worker), by scanning /proc (no ps dependency). */
function childPids (pid) {
  const found = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ')
      if (Number(fields[1]) === pid) found.push(Number(entry))
    } catch {} // the process ended while being read
  }
  return found
}

function nginxConfig (dir, port, upstreamPort) {
  return `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  # no limit on request bodies (the default is 1 MiB): the streams bench uploads 1 GiB
  client_max_body_size 0;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
  }
  # "Connection: upgrade" for a WebSocket handshake, else empty so the upstream connection is kept alive
  map $http_upgrade $connection_upgrade {
    default upgrade;
    '' '';
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
      proxy_send_timeout 300s;
    }
  }
}
`
}

function caddyConfig (dir, port, upstreamPort) {
  return `{
  admin off
  auto_https off
  storage file_system ${dir}/data
}
http://127.0.0.1:${port} {
  bind 127.0.0.1
  reverse_proxy 127.0.0.1:${upstreamPort} {
    flush_interval -1
  }
}
`
}

const TARGETS = {
  nginx: {
    pkg: 'nginx',
    config: nginxConfig,
    file: 'nginx.conf',
    argv: (bin, dir) => [bin, '-p', `${dir}/`, '-e', `${dir}/error.log`, '-c', `${dir}/nginx.conf`],
    log: 'error.log'
  },
  caddy: {
    pkg: 'caddy',
    config: caddyConfig,
    file: 'Caddyfile',
    argv: (bin, dir) => [bin, 'run', '--config', `${dir}/Caddyfile`, '--adapter', 'caddyfile'],
    log: 'caddy.log'
  }
}

/**
 * Starts nginx or caddy in front of `upstream` ({ port }), as { name, pid, url, stop }, or null
 * (with the reason in `skipped`) when it cannot be installed or started.
 */
export async function startExternal (name, upstream, skipped) {
  const target = TARGETS[name]
  const bin = ensureBinary(name, target.pkg, skipped)
  if (!bin) return null
  const dir = mkdtempSync(join(tmpdir(), `bench-${name}-`))
  const port = await freePort()
  writeFileSync(join(dir, target.file), target.config(dir, port, upstream.port))
  const [command, ...args] = pinnedCommand(target.argv(bin, dir), 'server')
  const log = join(dir, target.log)
  const child = spawn(command, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    // Caddy looks for its config and data dirs under these
    env: { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir }
  })
  const stderr = []
  child.stderr.on('data', (chunk) => { if (stderr.length < 100) stderr.push(chunk) })
  trackChild(child)
  const server = { name, pid: child.pid, port, url: `http://127.0.0.1:${port}`, child, dir }
  try {
    await waitForPort(port, child, name)
  } catch (err) {
    await stopExternal(server)
    const output = Buffer.concat(stderr).toString() || readLog(log)
    skipped.set(name, `${err.message}: ${output.trim().split('\n').slice(-3).join(' | ')}`)
    return null
  }
  setWorkers(child.pid, childPids(child.pid))
  return server
}

function readLog (path) {
  try { return readFileSync(path, 'utf8') } catch { return '' }
}

/** SIGTERM (nginx: fast shutdown, its worker too; Caddy: exits), SIGKILL after 5 s; removes the temp dir. */
export async function stopExternal (server) {
  const { child } = server
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    const timer = setTimeout(() => {
      for (const pid of [...workers(child.pid), child.pid]) {
        try { process.kill(pid, 'SIGKILL') } catch {}
      }
    }, 5000)
    await exited
    clearTimeout(timer)
  }
  setWorkers(child.pid, [])
  rmSync(server.dir, { recursive: true, force: true })
}
