// A small upstream body of known length that arrives in the same socket read as its head is
// handed to Fastify as one Buffer (plugins/proxy/upstream-handler.ts). These tests pin down
// what the client sees either way: the same status, headers and framing, and nothing held back
// when the body is slower than its head, over HTTP/1.1 and HTTP/2.
import t, { type Test } from 'tap'
import net from 'node:net'
import type { FastifyServerOptions } from 'fastify'
import { once } from 'node:events'
import { proxyApp, rawUpstream } from '../helpers/proxy-servers.js'
import { subscribe } from '../helpers/channels.js'
import { H2_MODES, h2Request, h2ServerOptions, h2Session } from '../helpers/h2.js'
import { CHANNELS, type StreamEndMessage } from '../../lib/diagnostics.js'
import { PROMPTLY, within } from '../helpers/bounded.js'
import { rawGet } from '../helpers/raw-get.js'

const HEAD_END = '\r\n\r\n'
const DEADLINE = { deadline: { timeout: 10_000 } }

/**
 * An ingress in front of an upstream that sends `first` (a 12-byte text response's head, and maybe
 * part of its body) and holds the connection: `held[0]` is the test's to finish.
 */
async function heldResponse (t: Test, first: string): Promise<{ url: string, held: net.Socket[] }> {
  const held: net.Socket[] = []
  const raw = await rawUpstream(t, (socket) => {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12${HEAD_END}${first}`)
    held.push(socket)
  })
  const { url } = await proxyApp(t, { upstream: raw }, DEADLINE)
  return { url, held }
}

function headOf (response: string): string {
  return response.slice(0, response.indexOf(HEAD_END)).toLowerCase()
}

t.test('a small body in its head\'s read: same status, headers, length and body', async (t) => {
  const heads: string[] = []
  const raw = await rawUpstream(t, (socket, head) => {
    heads.push(head)
    socket.write(`HTTP/1.1 201 Created\r\ncontent-type: text/plain\r\ncontent-length: 12\r\nx-up: 1${HEAD_END}hello world\n`)
  })
  const { url } = await proxyApp(t, { upstream: raw }, DEADLINE)
  const ends = subscribe<StreamEndMessage>(t, CHANNELS.streamEnd)
  const client = rawGet(url, '/small?q=1')
  await client.waitFor('hello world\n')
  const response = client.received()
  t.match(response, /^HTTP\/1\.1 201 Created\r\n/)
  t.match(headOf(response), /\r\ncontent-length: 12(\r\n|$)/, 'the upstream\'s length')
  t.notMatch(headOf(response), /transfer-encoding/, 'not re-framed as chunked')
  t.match(headOf(response), /\r\ncontent-type: text\/plain(\r\n|$)/)
  t.match(headOf(response), /\r\nx-up: 1(\r\n|$)/)
  t.equal(response.slice(response.indexOf(HEAD_END) + 4), 'hello world\n', 'the body, once')
  t.equal(heads.length, 1, 'the upstream saw one request')
  t.match(heads[0], /^GET \/small\?q=1 HTTP\/1\.1\r\n/)
  await within(PROMPTLY, ends.waitFor(1), 'a stream:end message')
  t.match(ends.messages[0], { bytes: 12, endedBy: 'upstream' }, 'stream:end counts the body sent whole')
  client.socket.destroy()
})

t.test('a body slower than its head: the head reaches the client first', async (t) => {
  const { url, held } = await heldResponse(t, '')
  const client = rawGet(url, '/slow')
  await client.waitFor(HEAD_END)
  t.ok(client.received().endsWith(HEAD_END), 'the head arrived while the upstream held the body')
  held[0].write('hello world\n')
  await client.waitFor('hello world\n')
  t.match(headOf(client.received()), /content-length: 12/)
  client.socket.destroy()
})

t.test('part of the body with the head: that part is not held back for the rest', async (t) => {
  const { url, held } = await heldResponse(t, 'hello')
  const client = rawGet(url, '/part')
  await client.waitFor(`${HEAD_END}hello`)
  t.ok(client.received().endsWith(`${HEAD_END}hello`), 'the first part arrived while the upstream held the rest')
  held[0].write(' world\n')
  await client.waitFor('hello world\n')
  t.equal(client.received().slice(client.received().indexOf(HEAD_END) + 4), 'hello world\n')
  client.socket.destroy()
})

t.test('no content-type from the upstream: none is added', async (t) => {
  const raw = await rawUpstream(t, (socket) => {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 5${HEAD_END}hello`)
  })
  const { url } = await proxyApp(t, { upstream: raw }, DEADLINE)
  const client = rawGet(url, '/untyped')
  await client.waitFor(`${HEAD_END}hello`)
  t.notMatch(headOf(client.received()), /content-type/)
  client.socket.destroy()
})

t.test('the client leaves while the rest of a small body is awaited: the upstream connection closes', async (t) => {
  const { url, held } = await heldResponse(t, 'hello')
  const client = rawGet(url, '/left')
  await client.waitFor(`${HEAD_END}hello`)
  const upstreamClosed = once(held[0], 'close')
  client.socket.destroy()
  await within(PROMPTLY, upstreamClosed, 'the upstream saw its connection close')
  t.ok(held[0].destroyed, 'the upstream saw its connection close')
  t.equal(held.length, 1, 'after one request')
})

for (const mode of H2_MODES) {
  t.test(`HTTP/2 (${mode}): a small body in its head's read reaches the client whole`, async (t) => {
    const heads: string[] = []
    const raw = await rawUpstream(t, (socket, head) => {
      heads.push(head)
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 12${HEAD_END}hello world\n`)
    })
    const { app } = await proxyApp(t, { upstream: raw }, { ...DEADLINE, fastify: h2ServerOptions(t, mode) as FastifyServerOptions })
    const session = await h2Session(t, mode, (app.server.address() as net.AddressInfo).port)
    const received = await within(PROMPTLY, h2Request(session, '/h2').done, 'the HTTP/2 client got the whole response')
    t.equal(received.status, 200)
    t.equal(received.headers['content-length'], '12')
    t.equal(received.body, 'hello world\n')
    t.equal(received.ending, 'end', 'ended cleanly')
    t.match(heads[0], /^GET \/h2 HTTP\/1\.1\r\n/, 'the upstream saw the request')
  })
}
