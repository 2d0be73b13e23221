// The example with HTTPS=1, from the outside: one port serves HTTP/2 and HTTP/1.1 (ALPN), with
// a self-signed certificate made at start or the one given in TLS_KEY_FILE/TLS_CERT_FILE, and
// the slow-client limits still hold on the HTTP/1.1 fallback (Fastify leaves them at Node's
// defaults there: 60 s for a head).
import { execFile } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http2 from 'node:http2'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'
import { test, type Test } from 'tap'
import selfsigned from 'selfsigned'
import { startExample, type RunningExample } from '../helpers/example-app.js'
import { within } from '../helpers/bounded.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const HEADERS_TIMEOUT_MS = 1000
const TOKEN = { authorization: 'Bearer demo-token' }

/** GET over HTTP/2, verifying the server against `ca` as a client that trusts it would. */
async function getH2 (origin: string, path: string, ca: string): Promise<{ status: number, body: string, alpn: string | undefined }> {
  const session = http2.connect(origin, { ca })
  try {
    const stream = session.request({ ':path': path, ...TOKEN })
    const [headers] = await within(10_000, once(stream, 'response'), `the h2 head of ${path}`) as [http2.IncomingHttpHeaders]
    let body = ''
    stream.setEncoding('utf8')
    for await (const chunk of stream) body += chunk
    return { status: Number(headers[':status']), body, alpn: session.alpnProtocol }
  } finally {
    session.close()
  }
}

/** GET over HTTP/1.1 on the same port (ALPN offers only http/1.1), verifying against `ca`. */
async function getH1 (origin: string, path: string, ca: string): Promise<{ status: number, body: string, version: string, alpn: string | false | null }> {
  const agent = new https.Agent({ ca, ALPNProtocols: ['http/1.1'] })
  try {
    const req = https.get(`${origin}${path}`, { agent, headers: TOKEN })
    const [res] = await within(10_000, once(req, 'response'), `the HTTP/1.1 head of ${path}`)
    let body = ''
    res.setEncoding('utf8')
    for await (const chunk of res) body += chunk
    return { status: res.statusCode, body, version: res.httpVersion, alpn: (res.socket as tls.TLSSocket).alpnProtocol }
  } finally {
    agent.destroy()
  }
}

/** The certificate the ingress presents, as PEM, and its names. */
async function presented (origin: string): Promise<{ pem: string, names: string, fingerprint: string }> {
  const { hostname, port } = new URL(origin)
  const socket = tls.connect({ host: hostname, port: Number(port), rejectUnauthorized: false, ALPNProtocols: ['h2'] })
  await within(10_000, once(socket, 'secureConnect'), 'the TLS handshake')
  const cert = new X509Certificate(socket.getPeerCertificate().raw)
  socket.destroy()
  return { pem: cert.toString(), names: cert.subjectAltName ?? '', fingerprint: cert.fingerprint256 }
}

function printedFingerprint (app: RunningExample): string | undefined {
  return app.lines.lines.map(line => /^\s+SHA-256 ([0-9A-F:]+)$/.exec(line)?.[1]).find(Boolean)
}

async function bothProtocols (t: Test, app: RunningExample, ca: string): Promise<void> {
  const h2 = await within(10_000, getH2(app.ingress, '/private/report', ca), 'the whole h2 answer')
  t.equal(h2.alpn, 'h2', 'ALPN chose h2 for a client that offers it')
  t.equal(h2.status, 200)
  t.match(JSON.parse(h2.body), { authorizationSeen: true })
  const h1 = await within(10_000, getH1(app.ingress, '/private/report', ca), 'the whole HTTP/1.1 answer')
  t.equal(h1.alpn, 'http/1.1', 'and HTTP/1.1 for one that offers only that')
  t.equal(h1.version, '1.1')
  t.equal(h1.status, 200)
  t.match(JSON.parse(h1.body), { authorizationSeen: true })
  const served = await app.lines.waitForCount(/\[files\] \/private\/report served \(authorization header present\)/, 2)
  t.equal(served.length, 2, 'the upstream served both, with the token')
}

test('HTTPS=1 makes a self-signed certificate for localhost and 127.0.0.1 and serves h2 and HTTP/1.1 on one port', async (t) => {
  const app = await startExample(t, { HTTPS: '1' })
  t.match(app.ingress, /^https:\/\//)
  const cert = await presented(app.ingress)
  t.match(cert.names, /DNS:localhost/)
  t.match(cert.names, /IP Address:127\.0\.0\.1/)
  t.equal(printedFingerprint(app), cert.fingerprint, 'the printed SHA-256 is the served certificate\'s')
  // Trusting that certificate is enough for a verifying client on 127.0.0.1: its names and key usage fit.
  await bothProtocols(t, app, cert.pem)
  t.equal(app.child.exitCode, null, 'the example is still running')
  t.same(await within(15_000, app.stop(), 'the example\'s exit after SIGTERM'), { code: 0, signal: null })
})

test('TLS_KEY_FILE and TLS_CERT_FILE are served; a slow HTTP/1.1 head over TLS is dropped after HEADERS_TIMEOUT_MS', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'streamline-tls-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  // A certificate of the operator's own, made independently of the example's tls.js.
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }]
  })
  const given = { cert: pems.cert, fingerprint: new X509Certificate(pems.cert).fingerprint256 }
  await writeFile(join(dir, 'key.pem'), pems.private)
  await writeFile(join(dir, 'cert.pem'), pems.cert)
  const app = await startExample(t, {
    HTTPS: '1',
    TLS_KEY_FILE: join(dir, 'key.pem'),
    TLS_CERT_FILE: join(dir, 'cert.pem'),
    HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
    REQUEST_TIMEOUT_MS: String(2 * HEADERS_TIMEOUT_MS)
  })
  t.ok(app.lines.lines.some(line => line.includes('certificate from TLS_CERT_FILE')))
  t.equal((await presented(app.ingress)).fingerprint, given.fingerprint, 'the given certificate is the one served')
  t.equal(printedFingerprint(app), given.fingerprint)
  await bothProtocols(t, app, given.cert)

  const { hostname, port } = new URL(app.ingress)
  const started = Date.now()
  const slow = tls.connect({ host: hostname, port: Number(port), rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
  await within(10_000, once(slow, 'secureConnect'), 'the TLS handshake of the slow client')
  slow.write('GET /private/report HTTP/1.1\r\nhost: x\r\n') // and never the blank line
  let answer = ''
  slow.setEncoding('latin1').on('data', (data: string) => { answer += data })
  await within(HEADERS_TIMEOUT_MS + 10_000, once(slow, 'close'), 'the server closing the slow client')
  const after = Date.now() - started
  t.match(answer, /^HTTP\/1\.1 408 /, 'Node answered 408')
  // The check runs every second (connectionsCheckingInterval); Node's fallback default is 60 s.
  t.ok(after >= HEADERS_TIMEOUT_MS - 100 && after < HEADERS_TIMEOUT_MS + 5000, `dropped after ${after} ms`)
  t.equal(app.lines.lines.filter(line => line.includes('/private/report served')).length, 2, 'the upstream never saw the slow request')
  t.equal(app.child.exitCode, null, 'the example is still running')
  t.same(await within(15_000, app.stop(), 'the example\'s exit after SIGTERM'), { code: 0, signal: null })
})

test('malformed HTTPS settings stop the start with a clear message', async (t) => {
  const run = (env: Record<string, string>) => new Promise<{ code: number | null, stderr: string }>(resolve => {
    const child = execFile(process.execPath, ['example-app/start.js'], {
      cwd: ROOT, env: { ...process.env, INGRESS_PORT: '0', LIVE_PORT: '0', FILES_PORT: '0', ...env }, timeout: 30_000
    }, (_err, _stdout, stderr) => resolve({ code: child.exitCode, stderr }))
  })
  const yes = await run({ HTTPS: 'yes' })
  t.not(yes.code, 0)
  t.match(yes.stderr, 'HTTPS must be 1 or 0, got "yes"')
  const half = await run({ HTTPS: '1', TLS_KEY_FILE: '/nonexistent/key.pem' })
  t.not(half.code, 0)
  t.match(half.stderr, 'TLS_KEY_FILE and TLS_CERT_FILE go together')
  const off = await run({ TLS_KEY_FILE: '/k.pem', TLS_CERT_FILE: '/c.pem' })
  t.not(off.code, 0)
  t.match(off.stderr, 'TLS_KEY_FILE and TLS_CERT_FILE are used with HTTPS=1 only')
})
