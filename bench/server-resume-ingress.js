// The ingress of the resume bench (bench/resume.js): the proxy plugin with a pool of the UPSTREAM
// replicas (comma-separated) and `sseResume: true` (defaults: 3 attempts, a 5 s gap), no deadline
// plugin (its stream lifetime and idle limits would only need raising). The parent's 'resumed'
// message is answered with what the `stream:resumed` channel saw (gapMs, when, the attempt, the
// replica), the `stream:end` causes counted, and when each upstream connect started (undici's
// `undici:client:beforeConnect` channel), to show how the resume requests' connects were paced.
// Times are on the machine's monotonic clock (ms), shared with the parent.
import { subscribe } from 'node:diagnostics_channel'
import Fastify from 'fastify'
import { proxy, CHANNELS } from 'fastify-streamline'
import { serve, fastifyServer } from './child.js'

const nowMs = () => Number(process.hrtime.bigint()) / 1e6
const resumed = { gaps: [], heads: [], attempts: [], upstreams: [], ends: {}, connects: [] }
subscribe(CHANNELS.streamResumed, (message) => {
  resumed.gaps.push(message.gapMs)
  resumed.heads.push(nowMs())
  resumed.attempts.push(message.attempt)
  resumed.upstreams.push(message.upstream)
})
subscribe(CHANNELS.streamEnd, (message) => {
  resumed.ends[message.endedBy] = (resumed.ends[message.endedBy] ?? 0) + 1
})
subscribe('undici:client:beforeConnect', () => resumed.connects.push(nowMs()))
process.on('message', (message) => {
  if (message.type === 'resumed') process.send({ type: 'resumed', ...resumed })
})

const app = Fastify({ logger: false })
await app.register(proxy, { upstream: process.env.UPSTREAM.split(','), sseResume: true })

await serve(...fastifyServer(app))
