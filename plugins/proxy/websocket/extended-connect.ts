import type { FastifyInstance } from 'fastify'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2'
import type { Duplex } from 'node:stream'
import { ConnectNotAllowedError } from '../errors.js'
import { writeError } from '../../../lib/error-answer.js'
import { listenFirst } from './server-listener.js'

const kExtendedConnect = Symbol('fastify-streamline.extended-connect')

interface Marked {
  [kExtendedConnect]?: true
}

/** Whether this request is an HTTP/2 WebSocket (RFC 8441) that the 'connect' listener routed. */
export function isExtendedConnect (raw: IncomingMessage): boolean {
  return (raw as IncomingMessage & Marked)[kExtendedConnect] === true
}

/**
 * Makes HTTP/2 WebSockets (RFC 8441) reach Fastify's router, once per server. When the server
 * advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, a browser opens a WebSocket as a CONNECT stream
 * with `:protocol: websocket` and the path in `:path`; Node's compatibility layer hands every
 * CONNECT to `server.on('connect')` only (without a listener it answers 405), so Fastify would
 * never see it. This listener routes the WebSocket ones like any request, with method CONNECT:
 * the proxy routes of registrations with `websocket: true` accept that method (Fastify learns
 * it here), so the app's hooks run first and only those routes can take the stream; any other
 * path gets the app's (or the proxy prefix's) 404.
 * Any other CONNECT is not ours: another 'connect' listener (an app's forward proxy) gets it
 * alone; without one, Node's own answer is kept, made explicit: an HTTP/1.1 CONNECT (on an
 * `allowHTTP1` server) has its socket destroyed, and an HTTP/2 one gets 405 with our JSON.
 * A WebSocket that another listener answered or started reading (an app serving some
 * WebSockets itself) is left to it: as for upgrades, that is known once the emit returns.
 */
export function installExtendedConnect (app: FastifyInstance): void {
  const server = app.server
  const onConnect = (req: IncomingMessage | Http2ServerRequest, res: Duplex | Http2ServerResponse): void => {
    const alone = server.listenerCount('connect') === 1
    if (req.httpVersionMajor !== 2) {
      if (alone) (res as Duplex).destroy()
      return
    }
    const protocol = req.headers[':protocol']
    if (typeof protocol !== 'string' || protocol.toLowerCase() !== 'websocket') {
      if (alone) refuse(app, req as Http2ServerRequest, res as Http2ServerResponse)
      return
    }
    const route = (): void => {
      (req as Http2ServerRequest & Marked)[kExtendedConnect] = true
      app.routing(req as unknown as IncomingMessage, res as unknown as ServerResponse)
    }
    if (alone) return route()
    queueMicrotask(() => { if (untouched(res as Http2ServerResponse)) route() })
  }
  if (!listenFirst(app, 'connect', onConnect)) return
  if (!app.supportedMethods.includes('CONNECT')) app.addHttpMethod('CONNECT')
}

/** Nobody answered the stream, ended it, or reads it. */
function untouched (res: Http2ServerResponse): boolean {
  const stream = res.stream
  return !res.headersSent && !res.writableEnded && !stream.destroyed && stream.readableFlowing === null
}

function refuse (app: FastifyInstance, req: Http2ServerRequest, res: Http2ServerResponse): void {
  app.log.info({ req: { method: req.method, url: req.url, protocol: req.headers[':protocol'] } }, 'HTTP/2 CONNECT refused')
  writeError(res as unknown as ServerResponse, new ConnectNotAllowedError())
}
