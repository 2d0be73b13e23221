// The proxy's own connectTimeout, headersTimeout and bodyTimeout fire when they say (undici's run
// on a 1 s clock: `headersTimeout: 300` answered after a second): a 504 before the head, a
// visible cut after it, and the upstream request closed either way.
import http from 'node:http'
import { once } from 'node:events'
import t from 'tap'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { within } from '../helpers/bounded.js'
import { unacceptingUrl } from '../helpers/unaccepting.js'

const TIMEOUT = 300
// Far below undici's 1 s clock, far above what a loaded machine adds to a 300 ms timer.
const LATE = 800

// First in the file: undici's 1 s clock is then idle, and starts with the connect (its timeout
// fired after about a second, never before half of one).
t.test(`connectTimeout ${TIMEOUT} ms: a 504 at ${TIMEOUT} ms, not a second later`, async (t) => {
  const unaccepting = await unacceptingUrl(t)
  const { url } = await proxyApp(t, { upstream: unaccepting, connectTimeout: TIMEOUT })
  const started = Date.now()
  const response = await within(5000, fetch(`${url}/never`), 'the answer')
  const took = Date.now() - started
  t.equal(response.status, 504)
  t.equal((await response.json() as { code: string }).code, 'FST_STREAMLINE_UPSTREAM_TIMEOUT')
  t.ok(took >= TIMEOUT - 20 && took < LATE, `answered after ${took} ms (timeout ${TIMEOUT} ms)`)
})

t.test(`headersTimeout ${TIMEOUT} ms: a 504 at ${TIMEOUT} ms, not a second later`, async (t) => {
  const up = await upstream(t, () => {})
  const { url } = await proxyApp(t, { upstream: up.url, headersTimeout: TIMEOUT })
  const closed = new Promise<void>(resolve => up.server.once('request', (_req, res: http.ServerResponse) => res.once('close', resolve)))
  const started = Date.now()
  const response = await within(5000, fetch(`${url}/slow`), 'the answer')
  const took = Date.now() - started
  t.equal(response.status, 504)
  t.equal((await response.json() as { code: string }).code, 'FST_STREAMLINE_UPSTREAM_TIMEOUT')
  t.ok(took >= TIMEOUT - 20 && took < LATE, `answered after ${took} ms (timeout ${TIMEOUT} ms)`)
  await within(5000, closed, 'the upstream request closed')
})

t.test(`bodyTimeout ${TIMEOUT} ms: a silent body is cut at ${TIMEOUT} ms, not a second later`, async (t) => {
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    res.write('part')
  })
  const { url } = await proxyApp(t, { upstream: up.url, bodyTimeout: TIMEOUT })
  const response = await within(5000, new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get(`${url}/download`, resolve).on('error', reject)
  }), 'the response head')
  const [first] = await within(5000, once(response, 'data'), 'the first chunk') as [Buffer]
  const lastChunk = Date.now()
  t.equal(first.toString(), 'part')
  const ending = await within(5000, new Promise<string>(resolve => {
    response.once('end', () => resolve('end'))
    response.once('aborted', () => resolve('cut'))
    response.once('error', () => resolve('cut'))
  }), 'the end of the body')
  const quiet = Date.now() - lastChunk
  t.equal(ending, 'cut', 'a visible cut, never a clean end')
  t.ok(quiet >= TIMEOUT - 20 && quiet < LATE, `cut after ${quiet} ms of silence (timeout ${TIMEOUT} ms)`)
})

t.test('chunks keep the body timer from firing', async (t) => {
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    let sent = 0
    const timer = setInterval(() => { res.write('x'); if (++sent === 8) { clearInterval(timer); res.end() } }, TIMEOUT / 3)
    res.on('close', () => clearInterval(timer))
  })
  const { url } = await proxyApp(t, { upstream: up.url, bodyTimeout: TIMEOUT })
  const response = await within(5000, fetch(`${url}/ticks`), 'the response')
  t.equal(await within(5000, response.text(), 'the whole body'), 'xxxxxxxx', `a body that never pauses ${TIMEOUT} ms is whole`)
})

t.test('a client that stops reading is not a silent upstream: the body timer waits for it', async (t) => {
  const total = 8 * 1024 * 1024
  const up = await upstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) })
    const chunk = Buffer.alloc(64 * 1024, 0x61)
    let sent = 0
    const pump = (): void => {
      while (sent < total) {
        sent += chunk.length
        if (!res.write(chunk)) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
  })
  const { url } = await proxyApp(t, { upstream: up.url, bodyTimeout: TIMEOUT })
  const response = await within(5000, new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get(`${url}/big`, resolve).on('error', reject)
  }), 'the response head')
  // Not read for several body timeouts: everything in between fills up and the upstream is paused.
  response.pause()
  await new Promise(resolve => setTimeout(resolve, 4 * TIMEOUT))
  let bytes = 0
  response.on('data', (chunk: Buffer) => { bytes += chunk.length })
  response.on('error', () => {})
  const ending = within(15_000, new Promise<string>(resolve => {
    response.once('close', () => resolve(response.complete ? 'end' : 'cut'))
  }), 'the end of the body')
  response.resume()
  await ending
  t.equal(await ending, 'end', 'the body was not cut while the client did not read')
  t.equal(bytes, total, 'every byte arrived')
})
