import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { errorBody } from '../../../lib/error-body.js'

/**
 * The upstream's 101 head as it sent it: status text, header names, case, order and
 * duplicates (Node's parser only trims the whitespace around values). It goes straight to
 * the socket, not through `ServerResponse`, which would add Date/Transfer-Encoding.
 */
export function switchingProtocolsHead (res: IncomingMessage): string {
  let head = `HTTP/1.1 101 ${res.statusMessage ?? 'Switching Protocols'}\r\n`
  const raw = res.rawHeaders
  for (let i = 0; i < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`
  return head + '\r\n'
}

/**
 * An upstream that refused the upgrade (403, 426, a 200 that merely names Upgrade...) is
 * answered like any response (`headers`: hop-by-hop fields removed), and the connection
 * closes after it.
 */
export function relayRefusal (upstreamRes: IncomingMessage, headers: OutgoingHttpHeaders, res: ServerResponse, client: Duplex): void {
  res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, { ...headers, connection: 'close' })
  upstreamRes.pipe(res)
  // A body cut short must not look complete to the client; a client that leaves frees the upstream.
  upstreamRes.once('aborted', () => client.destroy())
  upstreamRes.once('error', () => client.destroy())
  res.once('close', () => upstreamRes.destroy())
}

/** A JSON error on the client connection, before any byte of an answer went out. */
export function writeError (res: ServerResponse, err: { statusCode?: number, code: string, message: string }): void {
  const body = JSON.stringify(errorBody(err))
  res.writeHead(err.statusCode ?? 502, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    connection: 'close'
  })
  res.end(body)
}
