import { startServer, stopServer } from './lib/children.js'
import { BenchClient, grpc } from './lib/grpc-service.js'
const up = await startServer('server-grpc-upstream.js')
const ing = await startServer('server-grpc-ingress.js', { UPSTREAM: up.url })
for (const [name, port] of [['direct', up.port], ['ingress', ing.port]]) {
  const c = new BenchClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  const call = () => new Promise(r => c.Unary(Buffer.from('x'), (e) => { if (e) console.log(e.message); r() }))
  for (let i = 0; i < 5; i++) await call()
  const lat = []
  for (let i = 0; i < 30; i++) { const t = performance.now(); await call(); lat.push(performance.now() - t) }
  lat.sort((a, b) => a - b)
  console.log(name, 'sequential: median', lat[15].toFixed(1), 'ms, max', lat[29].toFixed(1))
  c.close()
}
await stopServer(ing); await stopServer(up)
