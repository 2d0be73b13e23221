// example-app/kubernetes/: every manifest parsed and checked against the others and against the
// example (names, labels, ports, probes, grace periods), then the two pods' entry points run as
// the manifests run them: the ingress finds the demo services by DNS, and on SIGTERM its
// readiness fails while a download still drains.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { Agent, request } from 'undici'
import { parseAllDocuments } from 'yaml'
import { ExampleLines } from '../helpers/example-lines.js'
import { within } from '../helpers/bounded.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const DIR = `${ROOT}example-app/kubernetes/`

// Manifests are plain data: the few fields checked here, loosely typed.
type Json = any
interface EnvVar { name: string, value?: string }

function manifests (): Json[] {
  const objects: Json[] = []
  for (const file of readdirSync(DIR).filter(name => name.endsWith('.yaml')).sort()) {
    for (const doc of parseAllDocuments(readFileSync(DIR + file, 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map(e => e.message).join('; ')}`)
      objects.push(doc.toJS())
    }
  }
  return objects
}

function find (objects: Json[], kind: string, name: string): Json {
  const found = objects.find(o => o.kind === kind && o.metadata?.name === name)
  if (found === undefined) throw new Error(`no ${kind} named ${name} in example-app/kubernetes/`)
  return found
}

/** Whether every label the selector asks for is on the pods. */
function selects (selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels[key] === value)
}

function env (container: Json): Record<string, string> {
  return Object.fromEntries((container.env as EnvVar[]).filter(e => e.value !== undefined).map(e => [e.name, e.value as string]))
}

/** A port given by name or number, as the container's port number. */
function containerPort (container: Json, port: string | number): number | undefined {
  return (container.ports as Json[]).find(p => p.name === port || p.containerPort === port)?.containerPort
}

t.test('the manifests agree with each other and with the example', async (t) => {
  const objects = manifests()
  const ingress = find(objects, 'Deployment', 'ingress')
  const ingressService = find(objects, 'Service', 'ingress')
  const services = find(objects, 'Deployment', 'demo-services')
  const headless = find(objects, 'Service', 'demo-services')
  const [ingressPod, servicesPod] = [ingress.spec.template, services.spec.template]
  const [ingressContainer, servicesContainer] = [ingressPod.spec.containers[0], servicesPod.spec.containers[0]]

  t.equal(headless.spec.clusterIP, 'None', 'the upstream Service is headless: DNS answers with every pod')
  t.ok(selects(headless.spec.selector, servicesPod.metadata.labels), 'the headless Service selects the demo services\' pods')
  t.ok(selects(ingressService.spec.selector, ingressPod.metadata.labels), 'the ingress Service selects the ingress pods')
  t.notOk(selects(headless.spec.selector, ingressPod.metadata.labels), 'and not the ingress pods')
  for (const deployment of [ingress, services]) {
    t.ok(selects(deployment.spec.selector.matchLabels, deployment.spec.template.metadata.labels), `${deployment.metadata.name}: its selector matches its pods`)
    t.ok(deployment.spec.replicas >= 2, `${deployment.metadata.name}: several replicas`)
  }

  const ingressEnv = env(ingressContainer)
  const servicesEnv = env(servicesContainer)
  const namespace = headless.metadata.namespace ?? 'default'
  t.equal(ingressEnv.UPSTREAM_DNS, `${headless.metadata.name}.${namespace}.svc.cluster.local`, 'the ingress resolves the headless Service\'s name')
  const servicePort = (name: string): Json => (headless.spec.ports as Json[]).find(p => p.name === name)
  for (const [name, variable] of [['live', 'LIVE_PORT'], ['files', 'FILES_PORT']]) {
    t.equal(String(servicePort(name).port), ingressEnv[variable], `the ingress's ${variable} is the headless Service's ${name} port`)
    t.equal(containerPort(servicesContainer, servicePort(name).targetPort), Number(servicesEnv[variable]), `the ${name} port's target is where the services listen (${variable})`)
  }
  t.equal(containerPort(ingressContainer, ingressService.spec.ports[0].targetPort), Number(ingressEnv.INGRESS_PORT), 'the ingress Service targets INGRESS_PORT')
  t.equal(ingressEnv.HOST, '0.0.0.0', 'the ingress listens on the pod\'s address')
  t.equal(servicesEnv.HOST, '0.0.0.0', 'so do the services')

  const readiness = ingressContainer.readinessProbe.httpGet
  t.equal(readiness.path, '/ready', 'the ingress\'s readiness probe asks /ready (checked against the running ingress below)')
  t.equal(containerPort(ingressContainer, readiness.port), Number(ingressEnv.INGRESS_PORT), 'on the ingress\'s port')
  const servicesReadiness = servicesContainer.readinessProbe.httpGet
  t.equal(servicesReadiness.path, '/healthz', 'the services\' probe asks the live service\'s /healthz')
  t.equal(containerPort(servicesContainer, servicesReadiness.port), Number(servicesEnv.LIVE_PORT), 'on its port')

  for (const container of [ingressContainer, servicesContainer]) {
    t.equal(container.command[0], 'node')
    t.ok(existsSync(ROOT + container.command[1]), `${container.command[1]} exists`)
  }

  // Grace: the wait while unready, then close-with-grace's bound on the drain.
  const unreadyMs = Number(ingressEnv.UNREADY_DELAY_MS)
  const closeGraceMs = Number(/CLOSE_GRACE_MS = ([\d_]+)/.exec(readFileSync(`${DIR}ingress.js`, 'utf8'))?.[1].replace(/_/g, ''))
  const drainMs = Number(ingressEnv.DRAIN_TIMEOUT_MS)
  const probe = ingressContainer.readinessProbe
  t.ok(unreadyMs >= probe.periodSeconds * probe.failureThreshold * 1000, `UNREADY_DELAY_MS (${unreadyMs}) lets the probe fail first`)
  t.ok(drainMs < closeGraceMs, `DRAIN_TIMEOUT_MS (${drainMs}) fits inside CLOSE_GRACE_MS (${closeGraceMs})`)
  t.ok(ingressPod.spec.terminationGracePeriodSeconds * 1000 > unreadyMs + closeGraceMs,
    `terminationGracePeriodSeconds (${ingressPod.spec.terminationGracePeriodSeconds} s) exceeds the wait and the drain (${unreadyMs / 1000} s + ${closeGraceMs / 1000} s)`)
})

async function freePort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** Runs a pod's command on this machine; SIGKILLed at teardown if still running. */
function runPod (t: Test, command: string[], env: Record<string, string>): { lines: ExampleLines, exited: Promise<unknown[]>, kill: () => void } {
  const child = spawn(process.execPath, command.slice(1), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const lines = new ExampleLines()
  createInterface({ input: child.stdout }).on('line', lines.push)
  createInterface({ input: child.stderr }).on('line', line => lines.push(`stderr: ${line}`))
  const exited = once(child, 'exit')
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL')
    await exited
  })
  return { lines, exited, kill: () => child.kill('SIGTERM') }
}

t.test('the pods as the manifests run them: DNS-found replicas, and readiness failing first on SIGTERM', async (t) => {
  const objects = manifests()
  const ingressContainer = find(objects, 'Deployment', 'ingress').spec.template.spec.containers[0]
  const servicesContainer = find(objects, 'Deployment', 'demo-services').spec.template.spec.containers[0]
  const agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 })
  t.teardown(async () => await agent.destroy())
  const local = { HOST: '127.0.0.1', LIVE_PORT: String(await freePort()), FILES_PORT: String(await freePort()) }
  // A download paced at 1 MB/s, so that the drain has something to wait for.
  const services = runPod(t, servicesContainer.command, { ...env(servicesContainer), ...local, REPLICA_NAME: 'demo-services-abc12', DOWNLOAD_MB_PER_S: '1' })
  await services.lines.waitFor(/^demo services listening/, 30_000)
  // localhost in place of the cluster name (resolved the same way: every address is a replica).
  const [unreadyMs, drainMs] = [2000, 2000]
  const ingress = runPod(t, ingressContainer.command, {
    ...env(ingressContainer), ...local, INGRESS_PORT: '0', UPSTREAM_DNS: 'localhost', UNREADY_DELAY_MS: String(unreadyMs), DRAIN_TIMEOUT_MS: String(drainMs)
  })
  const port = (await ingress.lines.waitFor(/^ingress listening on 127\.0\.0\.1:(\d+), upstreams localhost$/, 30_000))[1]
  const url = `http://127.0.0.1:${port}`

  const ready = await request(`${url}/ready`, { dispatcher: agent })
  t.equal(ready.statusCode, 200, '/ready: 200 while serving')
  t.same(await ready.body.json(), { ready: true })
  const whoami = await request(`${url}/live/whoami`, { dispatcher: agent })
  t.equal(whoami.statusCode, 200, 'the live service, found by DNS')
  t.equal(whoami.headers['x-replica'], 'demo-services-abc12', 'named by its pod')
  await whoami.body.dump()

  const download = await request(`${url}/files/download`, { dispatcher: agent })
  t.equal(download.statusCode, 200)
  const chunks = download.body[Symbol.asyncIterator]()
  await within(10_000, chunks.next(), 'the download\'s first chunk')
  const signalled = Date.now()
  ingress.kill()
  // Once the process has taken the signal (its log says so): not ready, everything else served.
  await ingress.lines.waitFor(/"msg":"not ready on SIGTERM: serving \d+ ms more, then draining"/)
  const probe = await request(`${url}/ready`, { dispatcher: agent, reset: true })
  t.equal(probe.statusCode, 503, '/ready: 503 once SIGTERM arrived')
  t.same(await probe.body.json(), { ready: false })
  const served = await request(`${url}/live/whoami`, { dispatcher: agent, reset: true })
  t.equal(served.statusCode, 200, 'a new connection is still served while unready')
  await served.body.dump()
  t.ok(Date.now() - signalled < unreadyMs, 'both within UNREADY_DELAY_MS')
  await ingress.lines.waitFor(/"msg":"draining"/, unreadyMs + 10_000)
  const [code] = await within(drainMs + 10_000, ingress.exited, 'the ingress\'s exit after its drain')
  t.equal(code, 0, 'the ingress exited 0 after its drain')
  t.ok(Date.now() - signalled >= unreadyMs + drainMs - 100, 'not before the wait and the drain timeout (the download held it)')
  let cut = false
  try {
    for (let next = await chunks.next(); next.done !== true; next = await chunks.next());
  } catch {
    cut = true
  }
  t.ok(cut, 'the unfinished download was cut, never ended as if complete')
  services.kill()
  t.equal((await within(15_000, services.exited, 'the services\' exit'))[0], 0, 'the services exited 0')
})
