// A gRPC response from an HTTP/2 upstream to a client that reads slowly: its trailers arrive at
// the proxy while the client is still behind. undici 7 completes an h2 request on its trailers
// and drops what the paused stream still held, so the client used to get a short body followed
// by the upstream's good status. The proxy reads a gRPC body ahead of a slow client (up to a
// backlog), and past it cuts rather than answers short.
import t, { type Test } from 'tap'
import type { FastifyServerOptions } from 'fastify'
import http2 from 'node:http2'
import { once } from 'node:events'
import { proxyApp, port } from '../helpers/proxy-servers.js'
import { ANSWERED, PROMPTLY, within } from '../helpers/bounded.js'

/** A raw h2c gRPC-like server: `size` bytes of body, then trailers grpc-status 0; `done` resolves once all is sent. */
async function bulkUpstream (t: Test, size: number): Promise<{ url: string, done: Promise<void> }> {
  const server = http2.createServer()
  let sent: () => void = () => {}
  const done = new Promise<void>(resolve => { sent = resolve })
  server.on('stream', (stream) => {
    stream.on('error', () => {})
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true })
    stream.on('wantTrailers', () => { stream.sendTrailers({ 'grpc-status': '0', 'x-last': 'yes' }); sent() })
    stream.end(Buffer.alloc(size, 7))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.close() })
  return { url: `http://127.0.0.1:${port(server)}`, done }
}

/** A POST through the h2c ingress whose client reads nothing until `readAfter` resolves. */
async function slowCall (t: Test, ingress: number, readAfter: Promise<void>): Promise<{ bytes: number, trailers: http2.IncomingHttpHeaders | null, rst: number }> {
  const session = http2.connect(`http://127.0.0.1:${ingress}`)
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  const stream = session.request({ ':method': 'POST', ':path': '/demo.Demo/Bulk', 'content-type': 'application/grpc', te: 'trailers' })
  stream.on('error', () => {})
  stream.end(Buffer.from([0, 0, 0, 0, 0]))
  stream.pause()
  let trailers: http2.IncomingHttpHeaders | null = null
  stream.on('trailers', (h) => { trailers = h })
  await within(PROMPTLY, readAfter, 'the upstream to have sent its whole answer (the proxy reading ahead of the client)')
  // Then a while longer: the trailers reach the proxy while the client is still paused.
  await new Promise(resolve => setTimeout(resolve, 200))
  let bytes = 0
  stream.on('data', (chunk: Buffer) => { bytes += chunk.length })
  const closed: Promise<unknown> = stream.destroyed ? Promise.resolve() : once(stream, 'close')
  stream.resume()
  await within(ANSWERED, closed, () => `the end of the slow client's stream (${bytes} bytes so far)`)
  return { bytes, trailers, rst: stream.rstCode ?? 0 }
}

// 200 KiB fits undici's h2 stream window: the upstream finishes even while the proxy is paused.
for (const size of [200 * 1024, 2 * 1024 * 1024]) {
  t.test(`${size} bytes: a client that reads only after the upstream sent everything gets every byte, then the trailers`, async (t) => {
    const up = await bulkUpstream(t, size)
    const { app } = await proxyApp(t, { upstream: up.url, http2: true }, { fastify: { http2: true } as FastifyServerOptions })
    const r = await slowCall(t, port(app.server), up.done)
    t.equal(r.bytes, size, 'the whole body, none of it dropped when the trailers came')
    t.equal(r.trailers?.['grpc-status'], '0', 'then the trailers')
    t.equal(r.trailers?.['x-last'], 'yes')
    t.equal(r.rst, http2.constants.NGHTTP2_NO_ERROR)
  })
}

// Just past the proxy's 8 MiB backlog: the rest fits the upstream's h2 window, so the upstream
// finishes (trailers included) while the proxy holds it paused.
t.test('past the backlog: every byte and the trailers, or a cut; never a short body with a status', async (t) => {
  const size = 8 * 1024 * 1024 + 160 * 1024
  const up = await bulkUpstream(t, size)
  const { app } = await proxyApp(t, { upstream: up.url, http2: true }, { fastify: { http2: true } as FastifyServerOptions })
  // The upstream cannot finish while the proxy holds it paused: read once the backlog has built up.
  const r = await slowCall(t, port(app.server), Promise.race([up.done, new Promise<void>(resolve => setTimeout(resolve, 1000))]))
  const whole = r.bytes === size && r.trailers?.['grpc-status'] === '0'
  const cut = r.rst !== http2.constants.NGHTTP2_NO_ERROR && r.trailers === null
  t.ok(whole || cut, `whole (${r.bytes} of ${size} bytes, trailers ${JSON.stringify(r.trailers)}) or cut (rst ${r.rst})`)
  await within(PROMPTLY, up.done, 'the upstream to have finished')
})
