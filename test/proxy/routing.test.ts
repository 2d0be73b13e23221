import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import Fastify from 'fastify'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'
import { proxyApp, rawRequest, receive, upstream } from '../helpers/proxy-servers.js'
import { ANSWERED, PROMPTLY, receiveWithin, within } from '../helpers/bounded.js'

/** Echoes what the upstream saw: method, path and headers. */
function echo (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
  req.resume()
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers }))
}

t.test('wrong options fail at registration with a clear message', async (t) => {
  const cases: Array<[unknown, RegExp]> = [
    [{}, /upstream: is required/],
    [{ upstream: 'ftp://x' }, /upstream: expected a URL starting with http:\/\/ or https:\/\//],
    [{ upstream: 'http://x/?q=1' }, /without query/],
    [{ upstream: 'http://x', prefix: 'api' }, /prefix: expected a path starting with \//],
    [{ upstream: 'http://x', prefix: '/api/*' }, /segment "\*" is not allowed/],
    [{ upstream: 'http://x', prefix: '/a', rewritePrefix: '/b/:id' }, /:id is not a parameter of the prefix/],
    [{ upstream: 'http://x', rewritePrefix: '/../admin' }, /segment "\.\." is not allowed/],
    [{ upstream: 'http://x', maxRetries: 3 }, /maxRetries: unknown option/],
    [{ upstream: 'http://x', retries: -1 }, /retries: expected an integer >= 0/],
    [{ upstream: 'http://x', tls: { rejectUnauthorized: 'no' } }, /tls.rejectUnauthorized: expected a boolean/],
    [{ upstream: 'http://x', replyOptions: { retryDelay: () => 1 } }, /replyOptions.retryDelay: the proxy's retry policy/],
    [{ upstream: 'http://x', websocket: 'yes' }, /websocket: expected a boolean/],
    [{ upstream: 'http://x', wsUpstream: 'ftp://y' }, /wsUpstream: expected a URL starting with ws:\/\//],
    [{ upstream: 'http://x', httpMethods: [] }, /httpMethods/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    app.register(proxy, options as ProxyOptions)
    const err = await app.ready().then(() => null, (e: Error & { code?: string }) => e)
    t.match(err, { code: 'FST_STREAMLINE_PROXY_INVALID_OPTION', message }, JSON.stringify(options))
    await app.close()
  }
  const ok = Fastify()
  ok.register(proxy, { upstream: 'http://x', websocket: false, wsUpstream: 'wss://y' })
  await ok.ready()
  await ok.close()
})

t.test('many registrations, prefixes, rewritePrefix params, routing by request, hooks', async (t) => {
  const a = await upstream(t, echo)
  const b = await upstream(t, echo)
  const options: ProxyOptions[] = [
    { upstream: `${a.url}/base/`, prefix: '/a', rewritePrefix: '/v1' },
    { upstream: b.url, prefix: '/tenants/:tenant', rewritePrefix: '/t/:tenant' },
    { upstream: `${a.url}/`, prefix: '/slash/' },
    { upstream: (request) => request.headers['x-pool'] === 'b' ? b.url : a.url, prefix: '/by-header' },
    {
      upstream: a.url,
      prefix: '/private',
      httpMethods: ['GET'],
      preHandler: async (request, reply) => {
        if (request.headers.authorization !== 'Bearer ok') await reply.code(401).send({ error: 'no' })
      }
    }
  ]
  const { url } = await proxyApp(t, options)

  const first = JSON.parse((await receiveWithin(`${url}/a/x/y?z=1&q=%20`)).body)
  t.equal(first.url, '/base/v1/x/y?z=1&q=%20', 'upstream path + rewritePrefix + rest, raw query kept')
  // Characters a raw client may send unencoded leave encoded, as the URL parser encodes them.
  const rawAnswer = await within(ANSWERED, rawRequest(url, 'GET /a/{x}?a="b\'<c>&d HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'), 'the proxy\'s answer to the raw request')
  const raw = JSON.parse(rawAnswer.slice(rawAnswer.indexOf('\r\n\r\n') + 4))
  t.equal(raw.url, '/base/v1/%7Bx%7D?a=%22b%27%3Cc%3E&d', 'path and query percent-encoded for the upstream')
  const exact = JSON.parse((await receiveWithin(`${url}/a`)).body)
  t.equal(exact.url, '/base/v1')
  const slash = JSON.parse((await receiveWithin(`${url}/slash/x/`)).body)
  t.equal(slash.url, '/x/', 'a trailing slash on the prefix is ignored; one on the request is kept')

  const tenant = JSON.parse((await receiveWithin(`${url}/tenants/acme%20co/items`)).body)
  t.equal(tenant.url, '/t/acme%20co/items', 'the param is re-encoded as one segment')
  const injected = await receiveWithin(`${url}/tenants/..%2Fadmin/items`)
  t.equal(injected.status, 400, 'a param cannot carry a separator')
  const dotted = await receiveWithin(`${url}/tenants/%2E%2E/items`)
  t.match(dotted.status, /^40[04]$/, 'a param cannot be a dot segment')
  t.equal(b.seen.length, 1, 'neither reached the upstream')

  await receiveWithin(`${url}/by-header/p`, { headers: { 'x-pool': 'b' } })
  await receiveWithin(`${url}/by-header/p`)
  t.same([a.seen.at(-1)?.url, b.seen.at(-1)?.url], ['/p', '/p'], 'the upstream function routes per request')

  const before = a.seen.length
  const denied = await receiveWithin(`${url}/private/secret`)
  t.equal(denied.status, 401)
  t.equal(a.seen.length, before, 'a preHandler that answers stops the request before any upstream contact')
  const allowed = await receiveWithin(`${url}/private/secret`, { headers: { authorization: 'Bearer ok' } })
  t.equal(JSON.parse(allowed.body).url, '/secret')
  t.equal(JSON.parse(allowed.body).headers.authorization, 'Bearer ok', 'end-to-end headers pass')
  const post = await receiveWithin(`${url}/private/secret`, { method: 'POST', headers: { authorization: 'Bearer ok' } })
  t.equal(post.status, 404, 'methods outside httpMethods are not routed')
})

t.test('the prefix cannot be escaped', async (t) => {
  const up = await upstream(t, echo)
  const { url } = await proxyApp(t, { upstream: `${up.url}/sandbox`, prefix: '/api' })
  const attempts = [
    '/api/../admin', '/api/%2e%2e/admin', '/api/%2E%2e/admin', '/api/.%2e/admin', '/api/x/..%2fadmin', '/api/x%2f..%2f..%2fadmin',
    '/api/..\\admin', '/api/x/%5c..%5cadmin', '/api/..;/admin', '/api/x/..;x=1/admin', '/api//evil.example/x', '/api/%252e%252e/admin',
    '/api/a/%00', 'http://evil.example/api/x', '//evil.example/api/x', '/api/./x'
  ]
  for (const path of attempts) {
    const raw = await within(ANSWERED, rawRequest(url, `GET ${path} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n`), 'the proxy\'s answer to the raw request')
    t.match(raw, /^HTTP\/1\.1 40[04] /, `${path} -> ${raw.slice(9, 12)}`)
  }
  t.same(up.seen.map(r => r.url), [], 'none of them reached the upstream')
  const fine = await within(ANSWERED, rawRequest(url, 'GET /api/a...b/c.. HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n'), 'the proxy\'s answer to the raw request')
  t.match(fine, /^HTTP\/1\.1 200 /, 'names that merely contain dots are not traversal')
  t.same(up.seen.map(r => r.url), ['/sandbox/a...b/c..'])
})

t.test('an encoded separator is refused on its own, with no dot segment beside it', async (t) => {
  // Each of these is refused by the proxy alone: none holds `..`, which reply-from refuses too.
  const up = await upstream(t, echo)
  const { url } = await proxyApp(t, [
    { upstream: `${up.url}/sandbox`, prefix: '/api' },
    { upstream: up.url, prefix: '/tenants/:tenant', rewritePrefix: '/t/:tenant' }
  ])
  const paths = ['/api/a%2fb', '/api/a%2Fb', '/api/%2F', '/api/a%5cb', '/api/a%5Cb/c', '/api/x/%2fetc%2fpasswd', '/tenants/a%2Fb/items', '/tenants/a%5cb/items']
  for (const path of paths) {
    const raw = await within(PROMPTLY, rawRequest(url, `GET ${path} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n`), `an answer to ${path}`)
    t.match(raw, /^HTTP\/1\.1 400 /, `${path} -> ${raw.slice(9, 12)}`)
    const body = raw.slice(raw.indexOf('\r\n\r\n') + 4)
    t.match(body, /"code":"FST_STREAMLINE_PROXY_BAD_PATH"/, `${path}: FST_STREAMLINE_PROXY_BAD_PATH`)
  }
  t.same(up.seen.map(r => r.url), [], 'none of them reached the upstream')
  const fine = await within(PROMPTLY, receive(`${url}/api/a%20b%2e`), 'an answer to /api/a%20b%2e')
  t.equal(JSON.parse(fine.body).url, '/sandbox/a%20b%2e', 'other escapes in a segment pass as sent')
})

t.test('hop-by-hop headers are removed both ways; the client cannot remove proxy headers', async (t) => {
  const up = await upstream(t, (req, res) => {
    req.resume()
    const body = JSON.stringify(req.headers)
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      connection: 'keep-alive, x-upstream-private',
      'x-upstream-private': 'secret',
      'keep-alive': 'timeout=5',
      'proxy-authenticate': 'Basic',
      upgrade: 'h2c',
      'x-end-to-end': 'kept'
    })
    res.end(body)
  })
  const { url } = await proxyApp(t, { upstream: up.url })
  const raw = await within(ANSWERED, rawRequest(url, 'GET /h HTTP/1.1\r\nHost: proxy\r\n' +
    'Connection: keep-alive, x-forwarded-for, x-forwarded-host, x-client-private\r\nX-Client-Private: 1\r\nKeep-Alive: timeout=9\r\n' +
    'Proxy-Authorization: Basic abc\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nTrailer: x-t\r\nUpgrade: websocket\r\nX-Custom: yes\r\n\r\n', /\r\n\r\n.*}/s), 'the proxy\'s answer to the raw request')
  const [head, body] = raw.split('\r\n\r\n')
  const seen = JSON.parse(body)
  for (const name of ['x-client-private', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'upgrade']) {
    t.equal(seen[name], undefined, `request ${name} removed`)
  }
  t.equal(seen['x-custom'], 'yes')
  t.equal(seen['x-forwarded-for'], '127.0.0.1', 'Connection: x-forwarded-for cannot remove the proxy\'s header')
  t.equal(seen['x-forwarded-host'], 'proxy')
  t.notMatch(head, /x-upstream-private|keep-alive: timeout=5|proxy-authenticate|upgrade: h2c/i, 'response hop-by-hop headers removed')
  t.match(head, /\r\nx-end-to-end: kept/i)
})

t.test('X-Forwarded-* honour trustProxy', async (t) => {
  const up = await upstream(t, echo)
  const incoming = { 'x-forwarded-for': '203.0.113.9, 198.51.100.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example', forwarded: 'for=1.2.3.4' }
  const { url: untrusting } = await proxyApp(t, { upstream: up.url })
  const plain = JSON.parse((await receiveWithin(`${untrusting}/x`, { headers: { host: 'ingress.local', ...incoming } })).body).headers
  t.equal(plain['x-forwarded-for'], '127.0.0.1', 'an untrusted peer\'s chain is replaced')
  t.equal(plain['x-forwarded-proto'], 'http')
  t.equal(plain['x-forwarded-host'], 'ingress.local')
  t.equal(plain.forwarded, undefined)

  const { url: trusting } = await proxyApp(t, { upstream: up.url }, { fastify: { trustProxy: '127.0.0.1' } })
  const kept = JSON.parse((await receiveWithin(`${trusting}/x`, { headers: { host: 'ingress.local', ...incoming } })).body).headers
  t.equal(kept['x-forwarded-for'], '198.51.100.1, 127.0.0.1', 'a trusted peer\'s chain is kept up to the first untrusted hop, then the peer appended')
  t.equal(kept['x-forwarded-proto'], 'https')
  t.equal(kept['x-forwarded-host'], 'public.example')
})

t.test('the package exports the proxy from ESM and CommonJS, root and subpath', async (t) => {
  const run = promisify(execFile)
  const esm = await run(process.execPath, ['--input-type=module', '-e', `
    import { proxy } from 'fastify-streamline'
    import sub, { upstreamUrl } from 'fastify-streamline/proxy'
    console.log(proxy === sub, typeof upstreamUrl, proxy[Symbol.for('plugin-meta')].name)
  `])
  t.equal(esm.stdout.trim(), 'true function fastify-streamline-proxy')
  const cjs = await run(process.execPath, ['-e', `
    const { proxy } = require('fastify-streamline')
    console.log(proxy === require('fastify-streamline/proxy').default)
  `])
  t.equal(cjs.stdout.trim(), 'true')
})
