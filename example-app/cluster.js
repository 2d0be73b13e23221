// The README's `node:cluster` recipe, runnable: `node example-app/cluster.js` (with the demo
// services running, e.g. `npm start` in another terminal). One ingress per core on one port;
// SIGTERM to the primary drains every worker, then all exit.
import cluster from 'node:cluster'
import { availableParallelism } from 'node:os'
import closeWithGrace from 'close-with-grace'
import { buildIngress } from './ingress.js'

if (cluster.isPrimary) {
  let stopping = false
  for (let i = 0; i < availableParallelism(); i++) cluster.fork()
  cluster.on('exit', (worker, code, signal) => {
    console.log(`worker ${worker.process.pid} exited (${signal ?? code})`)
    if (!stopping) cluster.fork() // replace a crashed worker, not one that was told to stop
  })
  // Ctrl-C reaches every worker itself; SIGTERM (from a process manager) reaches the primary only.
  process.on('SIGINT', () => { stopping = true })
  process.once('SIGTERM', () => {
    stopping = true
    // Not worker.kill(): it disconnects first, which waits for the open streams to end.
    for (const worker of Object.values(cluster.workers)) worker.process.kill('SIGTERM')
  })
} else {
  const app = await buildIngress()
  // Drains (streams end, downloads get drainTimeout), then exits; forced after 15 s.
  closeWithGrace({ delay: 15_000 }, () => app.close())
  await app.listen({ host: process.env.HOST ?? '0.0.0.0', port: Number(process.env.PORT ?? 8080) })
  console.log(`worker ${process.pid} listening`)
}
