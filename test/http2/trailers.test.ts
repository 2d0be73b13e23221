// Upstream trailers reach the client, declared in the upstream's `Trailer` header or not (a gRPC
// server that declares only grpc-status and sends grpc-message too): over HTTP/2 always, over
// HTTP/1.1 to a client that sent `TE: trailers`. Fields a trailer may not carry never pass.
import type { FastifyServerOptions } from 'fastify'
import http from 'node:http'
import t, { type Test } from 'tap'
import { proxyApp, receive, upstream, type Upstream } from '../helpers/proxy-servers.js'
import { H2_MODES, h2Request, h2ServerOptions, h2Session } from '../helpers/h2.js'
import { within } from '../helpers/bounded.js'

function grpcLike (_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/grpc-web', trailer: 'grpc-status' })
  res.write('message')
  res.addTrailers({ 'grpc-status': '3', 'grpc-message': 'bad argument', authorization: 'secret' })
  res.end()
}

async function listening (t: Test, up: Upstream, fastify: FastifyServerOptions = {}): Promise<number> {
  const { app } = await proxyApp(t, { upstream: up.url }, { fastify })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('not listening')
  return address.port
}

for (const mode of H2_MODES) {
  t.test(`${mode}: every allowed trailer reaches an h2 client, declared or not`, async (t) => {
    const up = await upstream(t, grpcLike)
    const port = await listening(t, up, h2ServerOptions(t, mode) as FastifyServerOptions)
    const session = await h2Session(t, mode, port)
    const received = await within(5000, h2Request(session, '/rpc').done, 'the whole h2 response')
    t.equal(received.status, 200)
    t.equal(received.body, 'message')
    t.equal(received.trailers['grpc-status'], '3', 'the declared trailer')
    t.equal(received.trailers['grpc-message'], 'bad argument', 'the undeclared one too')
    t.equal(received.trailers.authorization, undefined, 'a field a trailer may not carry is dropped')
  })
}

t.test('http/1.1 with TE: trailers gets them all, with the declared ones announced', async (t) => {
  const up = await upstream(t, grpcLike)
  const port = await listening(t, up)
  const received = await within(5000, receive(`http://127.0.0.1:${port}/rpc`, { headers: { te: 'trailers' } }), 'the whole response')
  t.equal(received.body, 'message')
  t.equal(received.headers.trailer, 'grpc-status', 'the declared trailer is announced')
  t.same(received.trailers, { 'grpc-status': '3', 'grpc-message': 'bad argument' })
  const without = await within(5000, receive(`http://127.0.0.1:${port}/rpc`), 'the whole response without TE')
  t.same(without.trailers, {}, 'no trailers to a client that did not ask for them')
})
