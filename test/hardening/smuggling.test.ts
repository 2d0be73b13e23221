// Request smuggling: framing that two HTTP parsers could read differently. Node's parser
// (llhttp, strict by default) must either refuse the request (400, connection closed, nothing
// sent upstream) or read it one way only, and the proxy must forward exactly that reading:
// never a second request hidden in a body or in ambiguous framing.
import t from 'tap'
import { checkHealthy, ingress, openFds, rawExchange, recordingUpstream, requestLines, statusLines } from '../helpers/hostile.js'

const H = 'host: ingress.test\r\n'
const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nhost: ingress.test\r\n\r\n'

interface Case {
  name: string
  bytes: string | string[]
  /** 'refused': 400 and close, the upstream sees no byte. Otherwise the one reading we expect. */
  expect: 'refused' | { statuses: number[], upstream: string[], bodies?: string[] }
}

const chunked = (size: string, data = 'hello'): string =>
  `POST /c HTTP/1.1\r\n${H}transfer-encoding: chunked\r\n\r\n${size}\r\n${data}\r\n0\r\n\r\n`

const cases: Case[] = [
  // Content-Length against Transfer-Encoding
  { name: 'CL + TE', bytes: `POST /a HTTP/1.1\r\n${H}content-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  { name: 'TE + CL (reversed order)', bytes: `POST /a HTTP/1.1\r\n${H}transfer-encoding: chunked\r\ncontent-length: 50\r\n\r\n0\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  { name: 'duplicate CL, same value', bytes: `POST /a HTTP/1.1\r\n${H}content-length: 5\r\ncontent-length: 5\r\n\r\nhello`, expect: 'refused' },
  { name: 'duplicate CL, different values', bytes: `POST /a HTTP/1.1\r\n${H}content-length: 0\r\ncontent-length: 46\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  { name: 'CL list "5, 5"', bytes: `POST /a HTTP/1.1\r\n${H}content-length: 5, 5\r\n\r\nhello`, expect: 'refused' },
  { name: 'Content-Length: +5', bytes: `POST /a HTTP/1.1\r\n${H}content-length: +5\r\n\r\nhello`, expect: 'refused' },
  { name: 'Content-Length: -1', bytes: `POST /a HTTP/1.1\r\n${H}content-length: -1\r\n\r\n`, expect: 'refused' },
  { name: 'Content-Length: 0x5', bytes: `POST /a HTTP/1.1\r\n${H}content-length: 0x5\r\n\r\nhello`, expect: 'refused' },
  { name: 'Content-Length overflowing 64 bits', bytes: `POST /a HTTP/1.1\r\n${H}content-length: 99999999999999999999999\r\n\r\nhello`, expect: 'refused' },
  // Obfuscated Transfer-Encoding
  { name: 'TE: xchunked', bytes: `POST /a HTTP/1.1\r\n${H}transfer-encoding: xchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  { name: 'TE: chunked, identity', bytes: `POST /a HTTP/1.1\r\n${H}transfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  { name: 'TE: identity (alone)', bytes: `POST /a HTTP/1.1\r\n${H}transfer-encoding: identity\r\n\r\n0\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  { name: 'TE name with a space before the colon', bytes: `POST /a HTTP/1.1\r\n${H}transfer-encoding : chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  { name: 'TE value with a vertical tab', bytes: `POST /a HTTP/1.1\r\n${H}transfer-encoding: \x0bchunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  // Leading whitespace is optional whitespace (RFC 9110 §5.6.3): one valid reading, chunked.
  {
    name: 'TE: " chunked" (leading OWS)',
    bytes: `POST /a HTTP/1.1\r\n${H}transfer-encoding:  chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
    expect: { statuses: [200], upstream: ['POST /a HTTP/1.1'], bodies: ['hello'] }
  },
  { name: 'two TE headers, both chunked', bytes: `POST /a HTTP/1.1\r\n${H}transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  // Line folding and bare line ends
  { name: 'obs-fold continuing TE', bytes: `POST /a HTTP/1.1\r\n${H}transfer-encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  { name: 'obs-fold in an ordinary header', bytes: `GET /a HTTP/1.1\r\n${H}x-folded: one\r\n two\r\n\r\n`, expect: 'refused' },
  { name: 'bare LF line ends', bytes: 'GET /a HTTP/1.1\nhost: ingress.test\n\n', expect: 'refused' },
  { name: 'bare LF inside the head, hiding a CL', bytes: `POST /a HTTP/1.1\r\n${H}x-a: 1\ncontent-length: 46\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  { name: 'bare CR inside the head', bytes: `GET /a HTTP/1.1\r\n${H}x-a: 1\rcontent-length: 46\r\n\r\n${SMUGGLED}`, expect: 'refused' },
  { name: 'bare CR after the request line', bytes: `GET /a HTTP/1.1\r${H}\r\n`, expect: 'refused' },
  // Chunk sizes and extensions
  { name: 'chunk size not hex', bytes: chunked('zz'), expect: 'refused' },
  { name: 'chunk size negative', bytes: chunked('-5'), expect: 'refused' },
  { name: 'chunk size with 0x', bytes: chunked('0x5'), expect: 'refused' },
  { name: 'chunk size overflowing 64 bits', bytes: chunked('fffffffffffffffff5'), expect: 'refused' },
  { name: 'chunk size with a leading space', bytes: chunked(' 5'), expect: 'refused' },
  { name: 'chunk data longer than its size', bytes: chunked('3', `hello\r\n0\r\n\r\n${SMUGGLED}`), expect: 'refused' },
  { name: 'chunk extension with a bare LF', bytes: chunked('5;a=b\n'), expect: 'refused' },
  { name: 'chunk extension with an unterminated quote', bytes: chunked('5;a="b'), expect: 'refused' },
  { name: 'chunk extension of 20 KB', bytes: chunked(`5;a=${'x'.repeat(20_000)}`), expect: 'refused' },
  // A valid extension is read once and not passed on: chunk framing is per hop.
  {
    name: 'valid chunk extension',
    bytes: chunked('5;name=value'),
    expect: { statuses: [200], upstream: ['POST /c HTTP/1.1'], bodies: ['hello'] }
  },
  // The control: a genuine second request after a complete chunked body is pipelining, read as two.
  {
    name: 'control: chunked body then a pipelined request',
    bytes: `${chunked('5')}GET /next HTTP/1.1\r\n${H}\r\n`,
    expect: { statuses: [200, 200], upstream: ['POST /c HTTP/1.1', 'GET /next HTTP/1.1'], bodies: ['hello', ''] }
  },
  // A GET with a body that holds a second request: the body is the body, read and dropped.
  {
    name: 'GET whose body holds a second request',
    bytes: `GET /a HTTP/1.1\r\n${H}content-length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
    expect: { statuses: [200], upstream: ['GET /a HTTP/1.1'], bodies: [''] }
  },
  {
    name: 'GET whose body holds a second request, sent in pieces',
    bytes: [`GET /a HTTP/1.1\r\n${H}content-length: ${SMUGGLED.length}\r\n\r\n`, SMUGGLED.slice(0, 10), SMUGGLED.slice(10)],
    expect: { statuses: [200], upstream: ['GET /a HTTP/1.1'], bodies: [''] }
  }
]

for (const c of cases) {
  t.test(c.name, async (t) => {
    const up = await recordingUpstream(t)
    const server = await ingress(t, up.url)
    const baseline = openFds()
    const answer = await rawExchange(server.port, c.bytes)
    t.comment(`client got: ${JSON.stringify(answer.text.slice(0, 160))}`)
    t.notMatch(up.all(), /(^|\n)GET \/smuggled/, 'no smuggled request line reached the upstream')
    if (c.expect === 'refused') {
      t.same(statusLines(answer.text), ['HTTP/1.1 400 Bad Request'], 'the client gets one 400')
      t.ok(answer.closed, 'and the connection is closed')
      t.equal(up.all(), '', 'the upstream received no byte')
    } else {
      t.same(statusLines(answer.text).map(l => Number(l.slice(9, 12))), c.expect.statuses, 'the client gets one answer per request')
      t.same(requestLines(up), c.expect.upstream, 'the upstream sees exactly these requests')
      if (c.expect.bodies !== undefined) t.same(up.requests.map(r => r.body), c.expect.bodies, 'with these bodies')
    }
    await checkHealthy(t, server, up, baseline)
  })
}
