import Fastify, { type FastifyInstance } from 'fastify'
import http from 'node:http'
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

/** What a client saw: status, headers, the body chunks with their arrival times, and how it ended. */
export interface Received {
  status: number
  headers: http.IncomingHttpHeaders
  headersAt: number
  chunks: Array<{ at: number, data: string }>
  body: string
  /** 'end' for a complete response, 'cut' when the connection broke before the end. */
  ending: 'end' | 'cut'
}

/** GET (or another method) with node:http, recording when each piece arrived, relative to the send. */
export function receive (url: string, options: http.RequestOptions = {}, body?: Buffer | string): Promise<Received> {
  return new Promise((resolve, reject) => {
    const start = Date.now()
    const req = http.request(url, { agent: false, ...options }, (res) => {
      const received: Received = { status: res.statusCode ?? 0, headers: res.headers, headersAt: Date.now() - start, chunks: [], body: '', ending: 'cut' }
      res.setEncoding('utf8')
      res.on('data', (data: string) => { received.chunks.push({ at: Date.now() - start, data }); received.body += data })
      res.on('end', () => { received.ending = 'end' })
      res.on('error', () => { received.ending = 'cut' })
      res.on('close', () => resolve(received))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Resolves when the signal aborts, with its reason. */
export function aborted (signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason)
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }))
}
