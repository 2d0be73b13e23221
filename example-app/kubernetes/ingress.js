// The ingress alone, as each of its Kubernetes pods runs it (ingress.yaml): it listens on HOST
// (0.0.0.0 in a pod) and INGRESS_PORT, and with UPSTREAM_DNS set every address of that name is a
// replica of the demo services (`resolve: { dns: true }`).
//
// SIGTERM: /ready answers 503 at once while everything is still served for UNREADY_DELAY_MS
// (the probes fail, load balancers and kube-proxy stop sending new connections); then the
// drain: event streams end at an event boundary, downloads get DRAIN_TIMEOUT_MS.
import { setTimeout as sleep } from 'node:timers/promises'
import closeWithGrace from 'close-with-grace'
import { readConfig } from '../config.js'
import { buildIngress } from '../ingress.js'

// What close() may take: drainTimeout (at most 8 s) and a margin. The pod's
// terminationGracePeriodSeconds must exceed UNREADY_DELAY_MS plus this (kubernetes.test.ts).
export const CLOSE_GRACE_MS = 10_000

const config = readConfig()
const app = await buildIngress(config)
closeWithGrace({ delay: config.unreadyDelayMs + CLOSE_GRACE_MS }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'stopping on an error')
  app.unready()
  app.log.warn(`not ready${signal ? ` on ${signal}` : ''}: serving ${config.unreadyDelayMs} ms more, then draining`)
  await sleep(config.unreadyDelayMs)
  app.log.warn('draining')
  await app.close()
})
await app.listen({ host: config.host, port: config.ingressPort })
console.log(`ingress listening on ${config.host}:${app.server.address().port}, upstreams ${config.upstreamDns ?? config.host}`)
