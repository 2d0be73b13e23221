import Fastify, { type FastifyInstance } from 'fastify'
import { Writable } from 'node:stream'
import type { Test } from 'tap'
import deadline from '../../plugins/deadline/index.js'
import type { DeadlineOptions } from '../../plugins/deadline/index.js'

export interface LogLine { level: number, msg: string, [key: string]: unknown }

/** A Fastify app with the deadline plugin whose log lines are kept for assertions. */
export async function deadlineApp (t: Test, options: DeadlineOptions): Promise<{ app: FastifyInstance, logs: LogLine[] }> {
  const logs: LogLine[] = []
  const stream = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logs.push(JSON.parse(line))
      callback()
    }
  })
  const app = Fastify({ logger: { level: 'warn', stream } })
  await app.register(deadline, options)
  t.teardown(() => app.close())
  return { app, logs }
}

export async function listen (app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return `http://127.0.0.1:${address.port}`
}

export { receive, type Received } from './receive.js'

/** Resolves when the signal aborts, with its reason. */
export function aborted (signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason)
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }))
}
