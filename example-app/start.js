// `npm start`: the demo services and the ingress in one process. Ctrl-C (or SIGTERM) closes
// them all, open streams and WebSockets included: the ingress first, while the demo services
// still stream, as it would be with real upstreams that do not stop with it.
import closeWithGrace from 'close-with-grace'
import { readConfig } from './config.js'
import { startUpstreams } from './upstreams.js'
import { buildIngress } from './ingress.js'
import { buildGrpcIngress } from './grpc-ingress.js'
import { loadCertificate } from './tls.js'

const config = readConfig()
const log = (line) => console.log(line)

let upstreams = null
let ingress = null
let grpcIngress = null

// Registered first, so that a failed start also closes whatever did start.
closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
  if (err) console.error(err)
  log(`shutting down${signal ? ` on ${signal}` : ''}: draining the ingress`)
  // The ingress drains on its own (event streams end at an event boundary, downloads are cut
  // after DRAIN_TIMEOUT_MS); only then do the demo services stop.
  await Promise.all([ingress?.close(), grpcIngress?.close()])
  log('ingress stopped')
  await upstreams?.close()
  log('stopped')
})

const certificate = config.https ? await loadCertificate(config.https) : null
upstreams = await startUpstreams(config, log)
ingress = await buildIngress(config, upstreams, certificate)

await ingress.listen({ host: config.host, port: config.ingressPort })
grpcIngress = await buildGrpcIngress(config, upstreams.grpc.url)
await grpcIngress.listen({ host: config.host, port: config.grpcPort })
const { timeout, streamIdleTimeout, maxStreamDuration } = config.deadline
console.log(`
fastify-streamline example
  ingress         ${ingressUrl(ingress)}/   <- open this in a browser
  live upstream   ${upstreams.live.url}   SSE ticker /ticker, WebSocket /chat, /whoami
  live replicas   ${replicaLine(upstreams.live.replicas)}
  files upstream  ${upstreams.files.url}   download /download, slow /slow, /private/report
  grpc ingress    ${config.host}:${grpcIngress.server.address().port}   gRPC (HTTP/2 cleartext): node example-app/grpc-client.js [unary|ticker]
  grpc upstream   ${upstreams.grpc.address}   demo.Ticker: Quote (unary), Watch (server stream, streaming mode)
  deadline        timeout ${timeout} ms, streamIdleTimeout ${streamIdleTimeout} ms, maxStreamDuration ${maxStreamDuration || 'off'}
  download        ${downloadLine()}
${certificate ? tlsLines(certificate) : ''}Press Ctrl-C to stop.
`)

function ingressUrl (app) {
  return `${certificate ? 'https' : 'http'}://${config.host}:${app.server.address().port}`
}

function replicaLine (replicas) {
  return replicas.names.map(([origin, name]) => `${name} ${origin}`).join(', ') + ' (a pool: the page stops and starts them)'
}

function downloadLine () {
  const { downloadMb, downloadMbPerS } = config
  if (downloadMbPerS === 0) return `${downloadMb} MB, as fast as the client reads`
  return `${downloadMb} MB at ${downloadMbPerS} MB/s (about ${(downloadMb / downloadMbPerS).toFixed(1)} s)`
}

function tlsLines ({ selfSigned, fingerprint }) {
  const origin = selfSigned ? 'self-signed for localhost, 127.0.0.1, ::1, made at start: the browser will warn' : 'from TLS_CERT_FILE'
  const webSockets = config.https.h2WebSocket ? 'over HTTP/2 (RFC 8441 extended CONNECT)' : 'over HTTP/1.1 upgrades (H2_WEBSOCKET=0)'
  return `  https           HTTP/2 and HTTP/1.1; certificate ${origin}
                  SHA-256 ${fingerprint}
                  WebSockets ${webSockets}
`
}
