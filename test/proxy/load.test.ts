import t, { type Test } from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { ANSWERED, receiveWithin, within } from '../helpers/bounded.js'

const require = createRequire(import.meta.url)

/**
 * The proxy in its own process (built dist/, as `npm test` builds first), so that its RSS is
 * not mixed with the test's clients and upstream. It answers 'rss' messages with its RSS after a
 * full GC, so the figure is what the proxy holds, not garbage waiting for collection.
 */
async function proxyProcess (t: Test, upstreamUrl: string): Promise<{ url: string, rss: () => Promise<number> }> {
  const fastify = pathToFileURL(require.resolve('fastify')).href
  const proxy = new URL('../../dist/plugins/proxy/index.js', import.meta.url).href
  const code = `
    import Fastify from ${JSON.stringify(fastify)}
    import proxy from ${JSON.stringify(proxy)}
    const app = Fastify()
    await app.register(proxy, { upstream: ${JSON.stringify(upstreamUrl)} })
    await app.listen({ port: 0, host: '127.0.0.1' })
    process.on('message', () => { globalThis.gc(); process.send({ rss: process.memoryUsage().rss }) })
    process.on('disconnect', () => process.exit(0))
    process.send({ port: app.server.address().port })`
  const child = spawn(process.execPath, ['--expose-gc', '--input-type=module', '-e', code], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  t.teardown(() => { child.kill() })
  // Starting a Node process and loading Fastify takes a while on a loaded machine.
  const [ready] = await within(ANSWERED, once(child, 'message'), 'the proxy process reported its port') as [{ port: number }]
  return {
    url: `http://127.0.0.1:${ready.port}`,
    rss: async () => {
      child.send('rss')
      const [message] = await within(ANSWERED, once(child, 'message'), 'the proxy process reported its RSS') as [{ rss: number }]
      return message.rss
    }
  }
}

t.test('backpressure: 50 slow clients make the upstream writes stall; the proxy RSS stays bounded', async (t) => {
  const chunk = Buffer.alloc(64 * 1024, 'x')
  const total = 500 * 1024 * 1024
  const streams: Array<{ written: number, stalled: boolean }> = []
  const up = await upstream(t, (req, res) => {
    if (req.method === 'HEAD') { res.end(); return }
    const state = { written: 0, stalled: false }
    streams.push(state)
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total })
    const pump = (): void => {
      state.stalled = false
      while (state.written < total && !res.destroyed) {
        state.written += chunk.length
        if (!res.write(chunk)) { state.stalled = true; res.once('drain', pump); return }
      }
    }
    pump()
  })
  const proxy = await proxyProcess(t, up.url)
  // Warm the proxy up once so that the baseline includes loaded code and one pooled connection.
  await receiveWithin(`${proxy.url}/warm`, { method: 'HEAD' })
  const before = await proxy.rss()

  // Clients that read about 16 KB/s each: pause after every chunk for as long as it "took".
  const clients: net.Socket[] = []
  const port = Number(new URL(proxy.url).port)
  for (let i = 0; i < 50; i++) {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    socket.on('data', (data: Buffer) => {
      socket.pause()
      setTimeout(() => socket.resume(), data.length / 16)
    })
    socket.write(`GET /big/${i} HTTP/1.1\r\nHost: proxy\r\n\r\n`)
    clients.push(socket)
  }
  t.teardown(() => { for (const c of clients) c.destroy() })
  await within(ANSWERED, (async () => { while (streams.length < 50) await once(up.server, 'request') })(), 'the upstream got all 50 requests')
  const started = Date.now()
  // Bounded run: a few seconds is enough for every buffer on the way to fill up.
  await new Promise((resolve) => setTimeout(resolve, 4000))
  const after = await proxy.rss()
  t.comment(`measured after ${Date.now() - started} ms`)
  const grownMb = (after - before) / 1024 / 1024
  const maxWrittenMb = Math.max(...streams.map(s => s.written)) / 1024 / 1024
  t.ok(grownMb < 64, `proxy RSS grew by ${grownMb.toFixed(1)} MB with 50 slow streams`)
  t.ok(maxWrittenMb < 64, `at most ${maxWrittenMb.toFixed(1)} MB of 500 MB written per stream`)
  t.equal(streams.filter(s => s.stalled).length, 50, 'every upstream write is stalled on backpressure')
})

t.test('200 open SSE streams do not starve a normal request to the same upstream', async (t) => {
  const open: http.ServerResponse[] = []
  const up = await upstream(t, (req, res) => {
    if (req.url === '/plain') { res.end('plain'); return }
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('data: hello\n\n')
    open.push(res)
  })
  const { url } = await proxyApp(t, { upstream: up.url })
  const clients: http.ClientRequest[] = []
  const heads: Array<Promise<unknown>> = []
  for (let i = 0; i < 200; i++) {
    const req = http.get(`${url}/sse/${i}`, { agent: false })
    req.on('error', () => {})
    heads.push(once(req, 'response'))
    clients.push(req)
  }
  t.teardown(() => { for (const c of clients) c.destroy() })
  await within(ANSWERED, Promise.all(heads), 'all 200 clients got their response head')
  t.equal(open.length, 200, '200 streams are open upstream')
  const plain = await receiveWithin(`${url}/plain`)
  t.equal(plain.body, 'plain')
  t.ok(plain.headersAt < 2000, `the GET completed in ${plain.headersAt} ms`)
  for (const c of clients) c.destroy()
})
