// A proxy in front of UPSTREAM for the proxy and websocket benches. MODE:
//   streamline           this package's proxy
//   streamline-deadline  the same, behind the deadline plugin (defaults), as an ingress would run it
//   http-proxy           @fastify/http-proxy 11, the usual alternative
// WEBSOCKET=1 turns on WebSocket pass-through (websocket: true) for either proxy.
import Fastify from 'fastify'
import httpProxy from '@fastify/http-proxy'
import { deadline, proxy } from 'fastify-streamline'
import { serve, fastifyServer } from './child.js'

const upstream = process.env.UPSTREAM
// only pass `websocket` when asked, so plain HTTP never depends on it
const ws = process.env.WEBSOCKET === '1' ? { websocket: true } : {}
const app = Fastify({ logger: false })

switch (process.env.MODE) {
  case 'streamline-deadline':
    await app.register(deadline)
    await app.register(proxy, { upstream, ...ws })
    break
  case 'streamline':
    await app.register(proxy, { upstream, ...ws })
    break
  case 'http-proxy':
    await app.register(httpProxy, { upstream, ...ws })
    break
  default:
    throw new Error(`unknown MODE ${process.env.MODE}`)
}

await serve(...fastifyServer(app))
