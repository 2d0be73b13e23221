// The ingress as the example builds it, for bench/slowloris.js: Fastify with the example's
// slow-client limits (example-app/config.js `server`, HEADERS_TIMEOUT_MS / REQUEST_TIMEOUT_MS),
// the deadline plugin with the example's settings (DEADLINE_TIMEOUT_MS), then the proxy to UPSTREAM.
import Fastify from 'fastify'
import { deadline, proxy } from 'fastify-streamline'
import { readConfig } from '../example-app/config.js'
import { serve, fastifyServer } from './child.js'

const config = readConfig()
const app = Fastify({ logger: false, ...config.server })
await app.register(deadline, config.deadline)
await app.register(proxy, { upstream: process.env.UPSTREAM, websocket: true })

await serve(...fastifyServer(app))
