import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import http2 from 'node:http2'
import { once } from 'node:events'
import { WebSocket } from 'ws'
import type { Test } from 'tap'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'
import { h2ServerOptions, type H2Mode } from './h2.js'
import { portOf } from './ws-servers.js'

export interface H2ProxyOptions extends ProxyOptions {
  /** Registered on the app before the proxy (auth hooks, other routes). */
  before?: (app: FastifyInstance) => Promise<void> | void
  /** Advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (default true). */
  enableConnectProtocol?: boolean
}

/**
 * An HTTP/2 app (TLS with allowHTTP1, or h2c) with the proxy under `/ws` and `websocket: true`,
 * advertising extended CONNECT. Open tunnels get a short close grace for quick teardowns.
 */
export async function h2ProxyApp (t: Test, mode: H2Mode, options: H2ProxyOptions): Promise<{ app: FastifyInstance, port: number }> {
  const { before, enableConnectProtocol = true, ...proxyOptions } = options
  const settings = { enableConnectProtocol }
  const base = h2ServerOptions(t, mode)
  // h2c: Fastify passes `http` to http2.createServer, whose options take the settings.
  const serverOptions = base.https === undefined
    ? { ...base, http: { settings } }
    : { ...base, https: { ...base.https, settings } }
  const app = Fastify({ logger: false, ...serverOptions } as unknown as FastifyServerOptions) as unknown as FastifyInstance
  if (before !== undefined) await before(app)
  await app.register(proxy, { websocket: true, wsCloseGrace: 100, prefix: '/ws', ...proxyOptions })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  return { app, port: portOf(app.server) }
}

/** An HTTP/2 session that has seen the server's SETTINGS (a :protocol is only valid once it has). */
export async function h2ConnectSession (t: Test, mode: H2Mode, port: number): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`${mode === 'tls' ? 'https' : 'http'}://127.0.0.1:${port}`, { rejectUnauthorized: false })
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  await once(session, 'remoteSettings')
  return session
}

export interface ExtendedConnect {
  stream: http2.ClientHttp2Stream
  /** The response head; the body (for a refusal) is read with `body()`. */
  response: Promise<http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader>
  body: () => Promise<string>
  /** The stream closed; its RST code (0 when it ended cleanly). */
  closed: Promise<number>
}

/** An RFC 8441 WebSocket request as a browser sends it: no key, the version, optional subprotocols. */
export function extendedConnect (session: http2.ClientHttp2Session, path: string, headers: http2.OutgoingHttpHeaders = {}): ExtendedConnect {
  const stream = session.request({
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':path': path,
    'sec-websocket-version': '13',
    ...headers
  }, { endStream: false })
  stream.on('error', () => {})
  const response = new Promise<http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader>((resolve, reject) => {
    stream.once('response', resolve)
    stream.once('close', () => reject(new Error(`stream closed before a response (rst ${String(stream.rstCode)})`)))
  })
  response.catch(() => {})
  const closed = new Promise<number>(resolve => stream.once('close', () => resolve(stream.rstCode ?? 0)))
  // Every byte that arrived until the stream closed. Not an async iterator: after a complete
  // answer the server resets the stream with NO_ERROR (RFC 9113 8.1), and Node's client may
  // close it before an iterator took its 'end', which the iterator calls a premature close.
  const body = async (): Promise<string> => {
    let text = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => { text += chunk })
    await closed
    return text
  }
  return { stream, response, body, closed }
}

/**
 * A `ws` client speaking over an accepted extended CONNECT stream. ws takes any Duplex through
 * `setSocket`; a WebSocket made without an address is a server's, so it is turned into a
 * client's (masked frames out, unmasked in), as RFC 8441 keeps RFC 6455's framing.
 */
export function webSocketOver (stream: http2.ClientHttp2Stream): WebSocket {
  const ws = new WebSocket(null as unknown as string, undefined, { autoPong: true } as never)
  ;(ws as unknown as { _isServer: boolean })._isServer = false
  ;(ws as unknown as { setSocket: (socket: unknown, head: Buffer, options: object) => void })
    .setSocket(stream, Buffer.alloc(0), { maxPayload: 0, allowSynchronousEvents: true })
  ws.on('error', () => {})
  return ws
}

/** Opens a WebSocket through the proxy over HTTP/2 and resolves once it is open (status 200). */
export async function openH2WebSocket (session: http2.ClientHttp2Session, path: string, headers: http2.OutgoingHttpHeaders = {}): Promise<{ ws: WebSocket, headers: http2.IncomingHttpHeaders, request: ExtendedConnect }> {
  const request = extendedConnect(session, path, headers)
  const response = await request.response
  if (response[':status'] !== 200) throw new Error(`status ${String(response[':status'])}: ${await request.body()}`)
  return { ws: webSocketOver(request.stream), headers: response, request }
}

/** The next message on `ws`, as text. */
export async function nextMessage (ws: WebSocket): Promise<string> {
  const [data] = await once(ws, 'message') as [Buffer]
  return data.toString()
}
