import t from 'tap'
import { proxyApp, rawUpstream } from '../helpers/proxy-servers.js'
import { receiveWithin } from '../helpers/bounded.js'

// Status lines that undici's parser lets through but no client can use: each must be the
// documented 502 FST_STREAMLINE_UPSTREAM_BAD_RESPONSE, not UPSTREAM_ERROR or UPSTREAM_UNAVAILABLE.
const RESPONSES: Record<string, string> = {
  '/status-000': 'HTTP/1.1 000 Zero\r\ncontent-length: 2\r\n\r\nhi',
  '/status-099': 'HTTP/1.1 099 Low\r\ncontent-length: 2\r\n\r\nhi',
  '/status-600': 'HTTP/1.1 600 High\r\ncontent-length: 2\r\n\r\nhi',
  '/status-999': 'HTTP/1.1 999 Odd\r\ncontent-length: 2\r\n\r\nhi',
  // A 101 to a plain GET, bare and with the headers of a real upgrade (the socket stays open).
  '/switch-bare': 'HTTP/1.1 101 Switching Protocols\r\n\r\n',
  '/switch-upgrade': 'HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n',
  // A final 100 (interim responses are only ever followed by the real one).
  '/continue-final': 'HTTP/1.1 100 Continue\r\ncontent-length: 2\r\n\r\nhi'
}

t.test('an upstream status outside 100-599, or a 101 nobody asked for, is 502 BAD_RESPONSE', async (t) => {
  const heads: string[] = []
  const raw = await rawUpstream(t, (socket, head) => {
    heads.push(head)
    const path = head.split(' ')[1]
    const response = RESPONSES[path] ?? 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nfine'
    if (path.startsWith('/switch')) socket.write(response)
    else socket.end(response)
  })
  const { url } = await proxyApp(t, { upstream: raw, prefix: '/raw' })

  for (const path of Object.keys(RESPONSES)) {
    const res = await receiveWithin(`${url}/raw${path}`)
    t.equal(res.status, 502, `${path}: 502`)
    t.match(res.headers['content-type'], /^application\/json/)
    t.same(JSON.parse(res.body), {
      statusCode: 502,
      code: 'FST_STREAMLINE_UPSTREAM_BAD_RESPONSE',
      error: 'Bad Gateway',
      message: 'The upstream service sent an invalid response'
    }, `${path}: the documented bad-response answer`)
  }
  t.same(heads.map(h => h.split('\r\n')[0]), Object.keys(RESPONSES).map(p => `GET ${p} HTTP/1.1`), 'the upstream saw each plain GET once, unchanged')
  t.ok(heads.every(h => !/\r\nupgrade:/i.test(h)), 'no request asked for an upgrade')

  const after = await receiveWithin(`${url}/raw/healthy`)
  t.equal(after.status, 200, 'the process is alive and still proxying')
  t.equal(after.body, 'fine')
})
