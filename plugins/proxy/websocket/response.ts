import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { cutResponse, http2Stream } from '../../../lib/abrupt-end.js'

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
 * closes after it (over HTTP/2 only the stream ends, which needs no header: h2 has neither
 * `Connection` nor status text).
 */
export function relayRefusal (upstreamRes: IncomingMessage, headers: OutgoingHttpHeaders, res: ServerResponse): void {
  if (http2Stream(res) === undefined) {
    res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.statusMessage, { ...headers, connection: 'close' })
  } else {
    res.writeHead(upstreamRes.statusCode ?? 502, headers)
  }
  upstreamRes.pipe(res)
  // A body cut short must not look complete to the client; a client that leaves frees the upstream.
  upstreamRes.once('aborted', () => cutResponse(res))
  upstreamRes.once('error', () => cutResponse(res))
  res.once('close', () => upstreamRes.destroy())
}
