// `resumeDownloads`: a GET download cut mid-body goes on from `Range: bytes=N-` with `If-Match`;
// only a 206 for exactly the rest of the same representation continues it, else the client's
// response is cut (never a wrong byte).
import t, { type Test } from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { proxyApp, upstream } from '../helpers/proxy-servers.js'
import { PROMPTLY, until, within } from '../helpers/bounded.js'
import { subscribe } from '../helpers/channels.js'
import type { StreamEndMessage, StreamResumedMessage } from '../../index.js'

// Not a multiple of any power of two: a splice at a wrong offset changes the digest.
const BLOCK = Buffer.alloc(1024 * 1024 + 13)
for (let i = 0; i < BLOCK.length; i++) BLOCK[i] = (i * 31 + (i >> 9)) & 255

function byteAt (offset: number): Buffer {
  return BLOCK.subarray(offset % BLOCK.length)
}

function sha256 (total: number): string {
  const hash = createHash('sha256')
  for (let at = 0; at < total; at += BLOCK.length) hash.update(BLOCK.subarray(0, Math.min(BLOCK.length, total - at)))
  return hash.digest('hex')
}

interface Seen { range: string | undefined, ifMatch: string | undefined }

/** Serves TOTAL bytes with a strong ETag and ranges; `plan(n)` says how the n-th request goes. */
const hung: http.ServerResponse[] = []

async function downloadUpstream (t: Test, total: number, plan: (n: number) => { cutAt?: number, etag?: string, status?: number, hang?: boolean }): Promise<{ url: string, seen: Seen[] }> {
  const seen: Seen[] = []
  const up = await upstream(t, (req, res) => {
    const n = seen.length
    seen.push({ range: req.headers.range, ifMatch: req.headers['if-match'] })
    const { cutAt = Infinity, etag = '"v1"', status, hang = false } = plan(n)
    if (hang) {
      hung.push(res)
      return
    }
    const from = req.headers.range === undefined ? 0 : Number(/^bytes=(\d+)-$/.exec(req.headers.range)?.[1])
    const code = status ?? (from > 0 ? 206 : 200)
    res.writeHead(code, {
      'content-type': 'application/octet-stream',
      etag,
      'accept-ranges': 'bytes',
      'content-length': total - from,
      ...(code === 206 ? { 'content-range': `bytes ${from}-${total - 1}/${total}` } : {})
    })
    let at = from
    const pump = (): void => {
      while (at < total) {
        if (at >= cutAt) {
          res.socket?.destroy()
          return
        }
        const piece = byteAt(at).subarray(0, Math.min(64 * 1024, total - at, cutAt - at))
        at += piece.length
        if (!res.write(piece)) {
          res.once('drain', pump)
          return
        }
      }
      res.end()
    }
    pump()
  })
  return { url: up.url, seen }
}

/** GETs `url`: the digest of what came, its length, and how the response ended. */
async function download (url: string): Promise<{ digest: string, bytes: number, ending: 'end' | 'cut', prefixOk: boolean }> {
  return await new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      const hash = createHash('sha256')
      let bytes = 0
      let prefixOk = true
      let ending: 'end' | 'cut' = 'cut'
      res.on('data', (chunk: Buffer) => {
        if (prefixOk && !chunk.equals(byteAt(bytes).subarray(0, chunk.length).length === chunk.length ? byteAt(bytes).subarray(0, chunk.length) : Buffer.concat([byteAt(bytes), BLOCK]).subarray(0, chunk.length))) prefixOk = false
        hash.update(chunk)
        bytes += chunk.length
      })
      res.on('end', () => { ending = 'end' })
      res.on('error', () => {})
      res.on('close', () => resolve({ digest: hash.digest('hex'), bytes, ending, prefixOk }))
    }).on('error', reject)
  })
}

t.test('a 200 MB download cut three times by the upstream arrives whole, with the right sha256', async (t) => {
  const total = 200 * 1024 * 1024
  const cuts = [0.3, 0.55, 0.8].map(share => Math.floor(total * share))
  const up = await downloadUpstream(t, total, (n) => ({ cutAt: cuts[n] }))
  const resumed = subscribe<StreamResumedMessage>(t, 'fastify-streamline:stream:resumed')
  const ends = subscribe<StreamEndMessage>(t, 'fastify-streamline:stream:end')
  const { url } = await proxyApp(t, { upstream: up.url, resumeDownloads: true })
  const got = await within(120_000, download(`${url}/file`), 'the download finished')
  t.equal(got.ending, 'end', 'a complete response')
  t.equal(got.bytes, total)
  t.equal(got.digest, sha256(total), 'the right sha256')
  t.same(up.seen, [
    { range: undefined, ifMatch: undefined },
    ...cuts.map(cut => ({ range: `bytes=${cut}-`, ifMatch: '"v1"' }))
  ], 'each resume asked for the rest, of the same ETag')
  t.match(resumed.messages, cuts.map(offset => ({ kind: 'download', offset, attempt: 1, upstream: up.url })), 'stream:resumed for each resume, with its offset')
  t.ok(resumed.messages.every(message => message.gapMs >= 0 && message.gapMs < 5000), 'each gap is within the gap budget')
  await within(PROMPTLY, ends.waitFor(1), 'stream:end was published')
  t.match(ends.messages[0], { resumes: 3, bytes: total, endedBy: 'upstream' }, 'stream:end counts the resumes')
})

for (const [name, plan, requests] of [
  ['an ETag that changed', (n: number) => n === 0 ? { cutAt: 3_000_000 } : { etag: '"v2"' }, 2],
  ['a 200 with the whole body', (n: number) => n === 0 ? { cutAt: 3_000_000 } : { status: 200 }, 2],
  ['a weak ETag from the start', (n: number) => n === 0 ? { cutAt: 3_000_000, etag: 'W/"v1"' } : {}, 1]
] as const) {
  t.test(`${name}: the client's response is cut, never spliced`, async (t) => {
    const total = 8 * 1024 * 1024
    const up = await downloadUpstream(t, total, plan)
    const { url } = await proxyApp(t, { upstream: up.url, resumeDownloads: true })
    const got = await within(30_000, download(`${url}/file`), 'the download ended')
    t.equal(got.ending, 'cut', 'the client sees a cut')
    t.ok(got.bytes <= 3_000_000, `no byte past the cut reached the client (${got.bytes})`)
    t.ok(got.prefixOk, 'every byte it got is right')
    t.equal(up.seen.length, requests, requests === 1 ? 'no resume request' : 'one resume request, refused')
    if (requests === 2) t.same(up.seen[1], { range: 'bytes=3000000-', ifMatch: '"v1"' })
  })
}

t.test('the client leaving while the resume request waits for its answer cancels it', async (t) => {
  const total = 8 * 1024 * 1024
  const up = await downloadUpstream(t, total, (n) => n === 0 ? { cutAt: 3_000_000 } : { hang: true })
  const { url } = await proxyApp(t, { upstream: up.url, resumeDownloads: true })
  const req = http.get(`${url}/file`, { agent: false })
  req.on('error', () => {})
  let bytes = 0
  req.on('response', (res) => {
    res.on('error', () => {})
    res.on('data', (chunk: Buffer) => { bytes += chunk.length })
  })
  await until(PROMPTLY, () => hung.length === 1, 'the resume request reached the upstream')
  await until(PROMPTLY, () => bytes === 3_000_000, `the client received every byte before the cut (has ${bytes})`)
  const pending = hung[0]
  const closed = once(pending, 'close')
  req.destroy()
  await within(PROMPTLY, closed, 'the resume request closed when the client left')
  t.same(up.seen[1], { range: 'bytes=3000000-', ifMatch: '"v1"' })
  hung.length = 0
})

t.test('with a pool of two, the range request goes to the other replica', async (t) => {
  const total = 8 * 1024 * 1024
  let requests = 0
  const plan = (): { cutAt?: number } => requests++ === 0 ? { cutAt: 3_000_000 } : {}
  const a = await downloadUpstream(t, total, plan)
  const b = await downloadUpstream(t, total, plan)
  const { url } = await proxyApp(t, { upstream: [a.url, b.url], resumeDownloads: true, outlierDetection: false })
  const got = await within(30_000, download(`${url}/file`), 'the download finished')
  t.equal(got.ending, 'end')
  t.equal(got.digest, sha256(total), 'the right sha256')
  const [first, other] = a.seen[0]?.range === undefined && a.seen.length > 0 ? [a, b] : [b, a]
  t.same(first.seen, [{ range: undefined, ifMatch: undefined }], 'the replica that cut saw only the first request')
  t.same(other.seen, [{ range: 'bytes=3000000-', ifMatch: '"v1"' }], 'the other replica got the range request')
})
