// Type test, checked by `tsc --noEmit` in `npm test` (not run by tap): a pool's options and its
// channels, from the package's root, under `strict`.
import Fastify from 'fastify'
import {
  proxy, channels, type BalanceOption, type HealthCheckOptions, type OutlierDetectionOptions, type ReplicaOption,
  type UpstreamEjectedMessage, type UpstreamHealthMessage, type UpstreamSetMessage
} from '../../index.js'

function expectType<T> (value: T): T { return value }

export async function pools (): Promise<void> {
  const app = Fastify()
  const replicas: ReplicaOption[] = ['http://a:3000', { url: 'http://b:3000', weight: 2 }]
  const balance: BalanceOption = { hash: (request) => request.headers['x-user'] as string }
  const outlierDetection: OutlierDetectionOptions = { consecutiveFailures: 3, baseEjection: 10_000 }
  const healthCheck: HealthCheckOptions = { path: '/healthz', interval: 5000 }
  await app.register(proxy, { upstream: replicas, balance, outlierDetection, healthCheck, retries: 1, retryBodyLimit: 1024, retryNonIdempotent: false })
  await app.register(proxy, { upstream: 'http://live.default.svc.cluster.local:3000', resolve: { dns: true, interval: 5000 }, prefix: '/live' })
  await app.register(proxy, { resolve: async () => ['http://10.0.0.1:3000'], prefix: '/consul', outlierDetection: false })
  await app.register(proxy, { upstream: ['http://a'], resolve: { replicas: async () => [{ url: 'http://a', weight: 1 }], interval: 1000 } })
  // @ts-expect-error a balance policy that does not exist
  await app.register(proxy, { upstream: replicas, balance: 'fastest' })
  // @ts-expect-error a health check needs its path
  await app.register(proxy, { upstream: replicas, healthCheck: { interval: 1000 } })
  // @ts-expect-error resolve with dns takes `true`
  await app.register(proxy, { upstream: replicas, resolve: { dns: 'yes' } })
  channels.upstreamEjected.subscribe((message) => {
    expectType<UpstreamEjectedMessage>(message)
    expectType<'consecutive-failures'>(message.reason)
    expectType<number>(message.until)
  })
  channels.upstreamRestored.subscribe(({ upstream }) => expectType<string>(upstream))
  channels.upstreamHealth.subscribe((message) => expectType<UpstreamHealthMessage>(message))
  channels.upstreamSet.subscribe((message) => expectType<string[]>(expectType<UpstreamSetMessage>(message).upstreams))
  channels.proxyResponse.subscribe(({ upstream }) => expectType<string>(upstream))
  channels.streamEnd.subscribe(({ upstream }) => expectType<string>(upstream))
  channels.tunnelClosed.subscribe(({ upstream }) => expectType<string>(upstream))
}
