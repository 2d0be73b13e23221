import http, { type ClientRequest, type ClientRequestArgs } from 'node:http'
import https from 'node:https'
import net, { type Socket } from 'node:net'
import type { ProxyTlsOptions, UpstreamRequestHeaders } from '../types.js'

/** The handshake sent upstream as a plain HTTP GET; the caller listens for its outcome. */
export function requestUpgrade (target: URL, headers: UpstreamRequestHeaders, tls: ProxyTlsOptions): ClientRequest {
  const secure = target.protocol === 'https:'
  return (secure ? https : http).request({
    protocol: target.protocol,
    hostname: target.hostname.replace(/^\[|\]$/g, ''),
    port: target.port !== '' ? Number(target.port) : (secure ? 443 : 80),
    path: target.pathname + target.search,
    method: 'GET',
    headers,
    setHost: false,
    // A fresh connection per handshake: an upgraded socket never returns to a pool. Over
    // plain TCP it is half-open, so the upstream's FIN does not end our side towards it
    // (a half-close passes on); TLS keeps https' own connection, certificates verified.
    ...(secure ? { agent: false, ...tls } : { createConnection: halfOpenConnection })
  })
}

function halfOpenConnection (options: ClientRequestArgs): Socket {
  return net.connect({ host: options.hostname ?? undefined, port: Number(options.port), allowHalfOpen: true })
}
