// Type test, checked by `tsc --noEmit` in `npm test` (not run by tap): the public types of
// the deadline plugin, as a user's code sees them through Fastify's declaration merging.
import Fastify, { type FastifyContextConfig } from 'fastify'
import deadline, { budgetLeft, deadlineHeaders, DeadlineExceededError, type DeadlinePhase, type RequestDeadline } from '../../plugins/deadline/index.js'

function expectType<T> (value: T): T { return value }

const app = Fastify()
export async function register (): Promise<void> {
  await app.register(deadline, { timeout: 1000, streamIdleTimeout: 5000, maxStreamDuration: 0, statusCode: 504, trustIncoming: (request) => request.ip === '127.0.0.1' })
  // @ts-expect-error timeout is a number of milliseconds
  await app.register(deadline, { timeout: '1s' })
  // @ts-expect-error unknown option
  await app.register(deadline, { deadline: 5 })
  // @ts-expect-error a typo of an option is an unknown option
  await app.register(deadline, { tmeout: 5 })
  // Fastify's own register options are accepted
  await app.register(deadline, { timeout: 5, logLevel: 'warn' })
}

app.get('/typed', { config: { deadline: { timeout: 10, streaming: true } } }, async (request) => {
  expectType<RequestDeadline>(request.deadline)
  expectType<AbortSignal>(request.deadline.signal)
  expectType<number>(request.deadline.expiresAt)
  expectType<number>(request.deadline.remaining())
  expectType<boolean>(request.deadline.streaming)
  expectType<Record<string, string>>(deadlineHeaders(request))
  const reason: unknown = request.deadline.signal.reason
  if (reason instanceof DeadlineExceededError) {
    expectType<DeadlinePhase>(reason.phase)
    expectType<string>(reason.code)
  }
  // @ts-expect-error the deadline is read-only
  request.deadline.expiresAt = 0
  return 'ok'
})
app.get('/out', { config: { deadline: false } }, async () => 'ok')
app.get('/defaults', async () => 'ok')
app.get('/empty', { config: { deadline: {} } }, async () => 'ok')
// @ts-expect-error `true` is not a value of config.deadline (omit it for the plugin's options)
app.get('/true', { config: { deadline: true } }, async () => 'ok')
// @ts-expect-error the same through app.route
app.route({ method: 'GET', url: '/true-route', config: { deadline: true }, handler: async () => 'ok' })
// @ts-expect-error nor any other non-object
app.get('/number', { config: { deadline: 5000 } }, async () => 'ok')
expectType<FastifyContextConfig>({ deadline: { maxStreamDuration: 10 } })
// @ts-expect-error config.deadline is false or an object, not true
expectType<FastifyContextConfig>({ deadline: true })
// @ts-expect-error unknown route option
expectType<FastifyContextConfig>({ deadline: { timeot: 5 } })

// budgetLeft: ms for the next hop (Infinity when nothing limits the request).
export function budgetOf (request: import('fastify').FastifyRequest): number {
  return budgetLeft(request)
}
