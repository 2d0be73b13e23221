// The apps test/package/consumer.test.ts compiles against the packed package, as a user writes
// them: no casts, no `any`. The same source is compiled as an ES module and as CommonJS.

/** Deadline and proxy registration, request.deadline, route config, typed channels, the error classes. */
export const CONSUMER = `
import Fastify, { type FastifyContextConfig } from 'fastify'
import {
  deadline, proxy, channels, CHANNELS, DeadlineExceededError, ClientDisconnectedError, InvalidDeadlineOptionError,
  type DeadlineOptions, type ProxyOptions, type RouteDeadlineConfig, type StreamEndCause
} from 'fastify-streamline'
import deadlineOnly, { deadlineHeaders } from 'fastify-streamline/deadline'
import proxyOnly from 'fastify-streamline/proxy'

export async function start (): Promise<string> {
  const app = Fastify()
  const options: DeadlineOptions = { timeout: 5000, streamIdleTimeout: 30000, trustIncoming: (request) => request.ip === '127.0.0.1' }
  await app.register(deadline, options)
  const api: ProxyOptions = { upstream: 'http://127.0.0.1:3001', prefix: '/api', websocket: true, config: { deadline: { timeout: 10000 } } }
  await app.register(proxy, api)
  await app.register(proxy, { upstream: 'http://127.0.0.1:3002', prefix: '/live', config: { deadline: { streaming: true, streamIdleTimeout: 15000 } } })
  const live: RouteDeadlineConfig = { streaming: true }
  const config: FastifyContextConfig = { deadline: false }
  app.get('/stream', { config: { deadline: live } }, async (request) => {
    const left: number = request.deadline.remaining()
    const signal: AbortSignal = request.deadline.signal
    const headers: Record<string, string> = deadlineHeaders(request)
    return { left, aborted: signal.aborted, headers, streaming: request.deadline.streaming }
  })
  app.get('/health', { config }, async () => 'ok')
  app.route({ method: 'GET', url: '/slow', config: { deadline: { timeout: 60000 } }, handler: async (request) => request.deadline.expiresAt })
  app.setErrorHandler(async (error, _request, reply) => {
    if (error instanceof DeadlineExceededError) return await reply.code(504).send({ phase: error.phase, after: error.elapsed })
    if (error instanceof ClientDisconnectedError || error instanceof InvalidDeadlineOptionError) return await reply.code(500).send(error.code)
    throw error
  })
  channels.streamEnd.subscribe(({ endedBy, bytes, durationMs, request }) => {
    const cause: StreamEndCause = endedBy
    request.log.info({ cause, bytes, durationMs }, 'stream ended')
  })
  channels.deadlineExpired.subscribe((message) => { app.log.warn({ route: message.route, phase: message.phase, outcome: message.outcome }) })
  channels.tunnelClosed.subscribe(({ closedBy, bytesIn, bytesOut }) => { app.log.info({ closedBy, bytesIn, bytesOut }) })
  const name: string = CHANNELS.streamEnd
  app.log.info({ name, same: deadlineOnly === deadline && proxyOnly === proxy })
  return await app.listen({ port: 0, host: '127.0.0.1' })
}
`

/** For CommonJS under module node16, which cannot require() an ES module: types with resolution-mode, values by import(). */
export const DYNAMIC_CONSUMER = `
import Fastify from 'fastify'
import type { RouteDeadlineConfig, StreamEndMessage } from 'fastify-streamline' with { 'resolution-mode': 'import' }

export async function start (): Promise<string> {
  const { deadline, proxy, channels, DeadlineExceededError } = await import('fastify-streamline')
  const app = Fastify()
  await app.register(deadline, { timeout: 5000 })
  await app.register(proxy, { upstream: 'http://127.0.0.1:3001', prefix: '/api', config: { deadline: { timeout: 10000 } } })
  const live: RouteDeadlineConfig = { streaming: true }
  app.get('/stream', { config: { deadline: live } }, async (request) => request.deadline.remaining())
  channels.streamEnd.subscribe((message: StreamEndMessage) => { app.log.info(message.endedBy) })
  app.setErrorHandler(async (error, _request, reply) => {
    if (error instanceof DeadlineExceededError) return await reply.code(504).send(error.phase)
    throw error
  })
  return await app.listen({ port: 0, host: '127.0.0.1' })
}
`

/** Four mistakes, each a type error (the test reads the messages). */
export const MISTAKES = `
import Fastify, { type FastifyContextConfig } from 'fastify'
import { proxy, type RouteDeadlineConfig } from 'fastify-streamline'

const app = Fastify()
export const typo: FastifyContextConfig = { deadline: { tmeout: 5 } }
export const on: RouteDeadlineConfig = true
app.register(proxy, { upstream: 'http://127.0.0.1:3001', config: { deadline: true } })
app.get('/x', { config: { deadline: true } }, async () => 'x')
`
