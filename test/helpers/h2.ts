import http2 from 'node:http2'
import { once } from 'node:events'

import type { Test } from 'tap'
import { selfSignedCertificate } from './tls.js'

/** The two ways the ingress serves HTTP/2: TLS with HTTP/1.1 fallback (browsers), and h2c (prior knowledge). */
export type H2Mode = 'tls' | 'h2c'
export const H2_MODES: H2Mode[] = ['tls', 'h2c']

/** Fastify server options for `mode` (spread into `Fastify({...})`). */
export function h2ServerOptions (t: Test, mode: H2Mode): { http2: true, https?: { allowHTTP1: true, key: Buffer, cert: Buffer } } {
  if (mode === 'h2c') return { http2: true }
  return { http2: true, https: { allowHTTP1: true, ...selfSignedCertificate(t) } }
}

/** An HTTP/2 session to a listening port, closed at teardown. */
export async function h2Session (t: Test, mode: H2Mode, port: number): Promise<http2.ClientHttp2Session> {
  const authority = `${mode === 'tls' ? 'https' : 'http'}://127.0.0.1:${port}`
  const session = http2.connect(authority, { rejectUnauthorized: false })
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  await once(session, 'connect')
  return session
}

/** What an h2 client saw on one stream. */
export interface H2Received {
  status: number
  headers: http2.IncomingHttpHeaders
  trailers: http2.IncomingHttpHeaders
  body: string
  /** 'end' when the stream ended cleanly, 'reset' with the code the server reset it with. */
  ending: 'end' | 'reset'
  rstCode: number
}

/** One request on `session`; `stream` is there to cancel it, `done` resolves when the stream closes. */
export function h2Request (session: http2.ClientHttp2Session, path: string, method = 'GET', body?: string): { stream: http2.ClientHttp2Stream, done: Promise<H2Received> } {
  const stream = session.request({ ':path': path, ':method': method }, { endStream: body === undefined && method === 'GET' })
  stream.on('error', () => {})
  const received: H2Received = { status: 0, headers: {}, trailers: {}, body: '', ending: 'reset', rstCode: 0 }
  stream.on('response', (headers) => { received.headers = headers; received.status = Number(headers[':status']) })
  stream.on('trailers', (trailers) => { received.trailers = trailers })
  stream.setEncoding('latin1')
  stream.on('data', (data: string) => { received.body += data })
  stream.on('end', () => { received.ending = 'end' })
  if (body !== undefined) stream.write(body)
  const done = new Promise<H2Received>(resolve => stream.on('close', () => {
    received.rstCode = stream.rstCode ?? 0
    if (received.rstCode !== 0) received.ending = 'reset'
    resolve(received)
  }))
  return { stream, done }
}

/** Resolves when `stream` has received `text` (or rejects if it closes first). */
export function h2Until (stream: http2.ClientHttp2Stream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = ''
    const onData = (data: string | Buffer): void => {
      seen += String(data)
      if (seen.includes(text)) { stream.off('data', onData); stream.off('close', onClose); resolve() }
    }
    const onClose = (): void => reject(new Error(`stream closed before "${text}"; got ${JSON.stringify(seen)}`))
    stream.on('data', onData)
    stream.once('close', onClose)
  })
}
