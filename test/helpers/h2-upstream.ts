import http2 from 'node:http2'
import { once } from 'node:events'
import type { Test } from 'tap'
import { port } from './proxy-servers.js'
import { PROMPTLY, within } from './bounded.js'
import type { Certificate } from './tls.js'

// An HTTP/2 upstream for the resume tests (`http2: true`): h2c (prior knowledge), or TLS with h2
// offered by ALPN. Each request's stream goes to the test, which answers and cuts it the way it
// wants (an RST_STREAM with a given code, a session destroyed, a GOAWAY).

export interface H2Exchange {
  stream: http2.ServerHttp2Stream
  headers: http2.IncomingHttpHeaders
  session: http2.ServerHttp2Session
}

export interface H2Upstream {
  url: string
  server: http2.Http2Server | http2.Http2SecureServer
  /** Every request's headers, in order. */
  seen: http2.IncomingHttpHeaders[]
  /** The sessions open now. */
  sessions: Set<http2.ServerHttp2Session>
  /** The next request; bounded by PROMPTLY, the failure naming `what`. */
  next: (what: string) => Promise<H2Exchange>
  /** Every session destroyed at once (a crash), the listener closed. */
  crash: () => void
}

/** `certificate`: a TLS server (h2 by ALPN); without it, h2c. */
export async function h2Upstream (t: Test, certificate?: Certificate): Promise<H2Upstream> {
  const server = certificate === undefined ? http2.createServer() : http2.createSecureServer(certificate)
  const seen: http2.IncomingHttpHeaders[] = []
  const queue: H2Exchange[] = []
  const sessions = new Set<http2.ServerHttp2Session>()
  let wake = (): void => {}
  server.on('session', (session) => {
    sessions.add(session)
    session.on('error', () => {})
    session.on('close', () => sessions.delete(session))
  })
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {})
    seen.push(headers)
    queue.push({ stream, headers, session: stream.session as http2.ServerHttp2Session })
    wake()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const crash = (): void => {
    server.close()
    for (const session of sessions) session.destroy()
  }
  t.teardown(crash)
  const take = async (): Promise<H2Exchange> => {
    while (queue.length === 0) await new Promise<void>(resolve => { wake = resolve })
    return queue.shift() as H2Exchange
  }
  const scheme = certificate === undefined ? 'http' : 'https'
  return { url: `${scheme}://127.0.0.1:${port(server)}`, server, seen, sessions, next: async (what) => await within(PROMPTLY, take(), what), crash }
}

/** An event stream's head. */
export function respondEvents (stream: http2.ServerHttp2Stream): void {
  stream.respond({ ':status': 200, 'content-type': 'text/event-stream' })
}
