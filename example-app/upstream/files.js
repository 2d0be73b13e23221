// The "files" demo service: a large chunked download generated on the fly, a slow endpoint,
// and a private report that the ingress guards with an auth hook.
import { Readable } from 'node:stream'
import Fastify from 'fastify'

const MB = 1024 * 1024
const CHUNK = Buffer.alloc(64 * 1024, 'fastify-streamline ')

/**
 * `downloadMbPerS` paces /download (MB per second, 0 or absent: as fast as the caller reads), so
 * that the demo's download visibly runs past the ingress's timeout, as a large export would.
 */
export async function startFiles ({ host, port, downloadMb, downloadMbPerS = 0, slowMs, log }) {
  // On close, a download or a slow answer in progress is cut rather than waited for: a
  // several-hundred-MB body would otherwise hold the shutdown until close-with-grace gives up.
  const app = Fastify({ forceCloseConnections: true })

  app.get('/download', (request, reply) => {
    const mb = boundedInteger(request.query.mb, downloadMb, 1, 4096)
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-disposition', `attachment; filename="demo-${mb}MB.bin"`)
      // No Content-Length: the body is chunked, as a generated export or a tarball would be.
      // This header lets the page draw a progress bar anyway.
      .header('x-download-bytes', String(mb * MB))
      .send(generatedBody(mb * MB, downloadMbPerS * MB, reply.raw, log))
  })

  app.get('/slow', (request, reply) => slowAnswer(request, reply, boundedInteger(request.query.ms, slowMs, 0, 600_000), log))

  // The ingress checks the token; this service only reports what reached it.
  app.get('/private/report', async (request) => {
    const authorizationSeen = request.headers.authorization !== undefined
    log(`[files] /private/report served (authorization header ${authorizationSeen ? 'present' : 'absent'})`)
    return { report: 'Q3 numbers: streams up, buffers down', authorizationSeen }
  })

  await app.listen({ host, port })
  return { app, url: `http://${host}:${app.server.address().port}` }
}

function generatedBody (total, bytesPerS, res, log) {
  let sent = 0
  let timer = null
  const started = Date.now()
  const push = (body) => {
    const chunk = total - sent >= CHUNK.length ? CHUNK : CHUNK.subarray(0, total - sent)
    sent += chunk.length
    body.push(chunk)
  }
  const body = new Readable({
    // read() is called only when the consumer wants more: backpressure from the client,
    // through the ingress, paces this loop. With a rate, a chunk is also held back until the
    // schedule allows it; read() is not called again before that push.
    read () {
      if (sent >= total) return this.push(null)
      const due = bytesPerS > 0 ? started + (sent / bytesPerS) * 1000 - Date.now() : 0
      if (due <= 0) return push(this)
      timer = setTimeout(() => {
        timer = null
        push(this)
      }, due)
    },
    destroy (err, callback) {
      clearTimeout(timer)
      callback(err)
    }
  })
  body.on('end', () => log(`[files] download of ${total} bytes sent in ${Date.now() - started} ms`))
  res.once('close', () => {
    if (!res.writableFinished) log(`[files] download cut by the caller after ${sent} of ${total} bytes`)
  })
  return body
}

function slowAnswer (request, reply, ms, log) {
  const started = Date.now()
  // A timer can fire a millisecond early by Date.now()'s clock: wait out the rest, so that the
  // answer never reports less than it was asked to wait.
  const answer = () => {
    const waitedMs = Date.now() - started
    if (waitedMs < ms) {
      timer = setTimeout(answer, ms - waitedMs)
      return
    }
    log(`[files] /slow answered after ${waitedMs} ms`)
    reply.send({ waitedMs })
  }
  let timer = setTimeout(answer, ms)
  // When the ingress's deadline expires it aborts the upstream request: stop working at once.
  reply.raw.once('close', () => {
    if (reply.raw.writableFinished) return
    clearTimeout(timer)
    log(`[files] /slow cancelled by the caller after ${Date.now() - started} ms`)
  })
}

function boundedInteger (raw, fallback, min, max) {
  const value = Number.parseInt(raw ?? '', 10)
  return Number.isInteger(value) ? Math.min(max, Math.max(min, value)) : fallback
}
