// Type test, checked by `tsc --noEmit` in `npm test` (not run by tap): options written for
// @fastify/http-proxy type-check against the proxy's options unchanged, and `reply.fromParameters`
// is typed on the reply.
import Fastify from 'fastify'
import type { FastifyReplyFromHooks } from '@fastify/reply-from'
import proxy from '../../plugins/proxy/index.js'

function expectType<T> (value: T): T { return value }

const app = Fastify()
export async function register (): Promise<void> {
  await app.register(proxy, {
    upstream: 'http://127.0.0.1:3000',
    prefix: '/api',
    rewritePrefix: '/v1',
    constraints: { host: 'api.example.com' },
    routes: ['/', '/*'],
    preRewrite: (url, _params, prefix) => url.replace(prefix, '/api'),
    handler: async (_request, reply, dest, options) => await reply.from(dest, options),
    internalRewriteLocationHeader: false,
    proxyPayloads: false,
    undici: { connections: 10, pipelining: 1 },
    http2: false,
    replyOptions: {
      getUpstream: () => 'http://127.0.0.1:3001',
      rewriteRequestHeaders: (_request, headers) => ({ ...headers, 'x-id': '1' }),
      onResponse: (_request, reply, res) => { reply.send(res) },
      maxRetriesOn503: 2
    },
    websocket: true,
    wsClientOptions: { headers: { authorization: 'token' } }
  })
  // @ts-expect-error wsHooks are refused at registration: not in the options' type
  await app.register(proxy, { upstream: 'http://x', wsHooks: {} })
}

app.get('/typed', async (_request, reply) => {
  const { url, options } = reply.fromParameters('/a', {}, '/')
  expectType<string>(url)
  expectType<FastifyReplyFromHooks>(options)
  return await reply.from(url, options)
})
