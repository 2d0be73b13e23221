// A proxy in front of UPSTREAM for the proxy and websocket benches. MODE:
//   streamline           this package's proxy
//   streamline-deadline  the same, behind the deadline plugin (defaults), as an ingress would run it
//   http-proxy           @fastify/http-proxy 11, the usual alternative
// WEBSOCKET=1 turns on WebSocket pass-through (websocket: true) for either proxy.
// UPSTREAM may list several URLs, comma-separated: this proxy then gets a pool (`upstream: [...]`,
// the pools bench), BALANCE its `balance`; the pool's ejections and restorations are sent to the
// parent ({ type: 'upstream', event, upstream, at }: `at` on the shared monotonic clock, ms).
import { subscribe } from 'node:diagnostics_channel'
import Fastify from 'fastify'
import httpProxy from '@fastify/http-proxy'
import { deadline, proxy, CHANNELS } from 'fastify-streamline'
import { serve, fastifyServer } from './child.js'

const urls = process.env.UPSTREAM.split(',')
const upstream = urls.length > 1 ? urls : urls[0]
const balance = process.env.BALANCE ? { balance: process.env.BALANCE } : {}
if (urls.length > 1) {
  for (const event of ['upstreamEjected', 'upstreamRestored']) {
    subscribe(CHANNELS[event], (message) => {
      process.send({ type: 'upstream', event, upstream: message.upstream, at: Number(process.hrtime.bigint()) / 1e6 })
    })
  }
}
// only pass `websocket` when asked, so plain HTTP never depends on it
const ws = process.env.WEBSOCKET === '1' ? { websocket: true } : {}
const app = Fastify({ logger: false })

switch (process.env.MODE) {
  case 'streamline-deadline':
    await app.register(deadline)
    await app.register(proxy, { upstream, ...ws })
    break
  case 'streamline':
    await app.register(proxy, { upstream, ...balance, ...ws })
    break
  case 'http-proxy':
    await app.register(httpProxy, { upstream, ...ws })
    break
  default:
    throw new Error(`unknown MODE ${process.env.MODE}`)
}

await serve(...fastifyServer(app))
