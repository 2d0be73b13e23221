// A header value with an obs-text byte (RFC 9110 §5.5: 0x80-0xFF, e.g. latin1 `café`) reaches
// the client as the same byte, whether the head goes out alone (SSE: flushed before any body)
// or together with the first body chunk.
import t from 'tap'
import net from 'node:net'
import { proxyApp, rawUpstream } from '../helpers/proxy-servers.js'
import { rawGet } from '../helpers/raw-get.js'

const HEAD_END = '\r\n\r\n'

t.test('an obs-text header byte is relayed as that byte, head flushed alone or with the body', async (t) => {
  const heads: string[] = []
  const held: net.Socket[] = []
  const raw = await rawUpstream(t, (socket, head) => {
    heads.push(head)
    const path = head.split(' ')[1]
    if (path === '/events') {
      // The head alone: the body comes only when the test says so.
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-label: caf\xE9\r\ntransfer-encoding: chunked${HEAD_END}`, 'latin1')
      held.push(socket)
    } else {
      socket.end(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-label: caf\xE9\r\ncontent-length: 5${HEAD_END}hello`, 'latin1')
    }
  })
  const { url } = await proxyApp(t, { upstream: raw })

  const sse = rawGet(url, '/events')
  await sse.waitFor(HEAD_END)
  const sseHead = sse.received()
  t.match(sseHead, /^HTTP\/1\.1 200 OK\r\n/)
  t.ok(sseHead.endsWith(HEAD_END), 'the head arrived alone, before any body')
  t.ok(sseHead.includes('\r\nx-label: caf\xE9\r\n'), 'SSE: the byte 0xE9, as the upstream sent it')
  t.notOk(sseHead.includes('caf\xC3\xA9'), 'SSE: not re-encoded as UTF-8')
  const event = 'data: bonjour\n\n'
  held[0].end(`${event.length.toString(16)}\r\n${event}\r\n0\r\n\r\n`)
  await sse.waitFor('0\r\n\r\n')
  t.match(sse.received().slice(sseHead.length), /data: bonjour\n\n/, 'the event follows')
  sse.socket.destroy()

  const plain = rawGet(url, '/plain')
  await plain.waitFor('hello')
  const plainHead = plain.received().slice(0, plain.received().indexOf(HEAD_END) + HEAD_END.length)
  t.ok(plainHead.includes('\r\nx-label: caf\xE9\r\n'), 'with a body: the byte 0xE9 too')
  t.notOk(plainHead.includes('caf\xC3\xA9'), 'with a body: not re-encoded')
  plain.socket.destroy()

  t.same(heads.map(h => h.split('\r\n')[0]), ['GET /events HTTP/1.1', 'GET /plain HTTP/1.1'], 'the upstream saw both requests')
  const alive = rawGet(url, '/plain')
  await alive.waitFor('hello')
  t.match(alive.received(), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\nhello$/, 'the process is alive: a third request answered')
  alive.socket.destroy()
  t.equal(heads.length, 3, 'the upstream saw each request once')
})
