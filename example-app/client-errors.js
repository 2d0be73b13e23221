// What the ingress answers when Node's HTTP parser refuses a request (a malformed head, a head
// over 16 KB, a head not finished within headersTimeout): Fastify's own answer has no `code`,
// so a client cannot tell these apart from the ingress's other errors by their body. This one
// gives each a stable code, with the parser's own as `cause`, in the ingress's error shape.
import { STATUS_CODES } from 'node:http'

const ANSWERS = {
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'DEMO_CLIENT_TIMEOUT', 'The request head did not arrive in time'],
  HPE_HEADER_OVERFLOW: [431, 'DEMO_HEADERS_TOO_LARGE', 'The request head is over the size allowed']
}
const BAD_REQUEST = [400, 'DEMO_BAD_REQUEST', 'The request could not be read as HTTP']

/** Fastify's `clientErrorHandler` option; `this` is the Fastify instance. */
export function clientErrorHandler (err, socket) {
  // A reset connection, or one already gone: nobody to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [statusCode, code, message] = ANSWERS[err.code] ?? BAD_REQUEST
  this.log.debug({ err, code }, 'request refused by the HTTP parser')
  if (socket.writable) {
    const body = JSON.stringify({ statusCode, code, error: STATUS_CODES[statusCode], message, cause: err.code ?? null })
    socket.write(`HTTP/1.1 ${statusCode} ${STATUS_CODES[statusCode]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}
