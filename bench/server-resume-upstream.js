// One replica of the event log behind the resume bench (bench/resume.js), node:http, no framework:
//   GET /events?stream=K&t0=T&every=E  stream K's event n (id n, from 1) is due at T + n * E, on the
//                         machine's monotonic clock (shared by every process, ms). The response sends
//                         the events from Last-Event-ID + 1 on (from 1 without one): those already due
//                         at once, as a replica taking over a stream catches up, then each at its due
//                         time. Its data is `<NAME> <due>`, so the client sees which replica sent it.
// Every replica serves the same log, so a stream may go on from any of them. Each response's
// [stream, first id, last id written] is kept; the parent's messages:
//   'freeze'  stop writing events (the run is over) and answer the log ({ type: 'freeze', log });
//   'die'     write the log to LOG_FILE synchronously, then SIGKILL this process: nothing is written
//             between the two, so the log holds exactly what went out before the kill (a log sent
//             over IPC could be lost with the process).
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { serve, httpServer } from './child.js'

const NAME = process.env.NAME ?? 'A'
const nowMs = () => Number(process.hrtime.bigint()) / 1e6
/** One entry per response: { stream, from, to } (to: the last id written, from - 1 before the first). */
const log = []
const open = new Set()
let frozen = false

function events (req, res, query) {
  const stream = query.get('stream')
  const t0 = Number(query.get('t0'))
  const every = Number(query.get('every'))
  const lastId = Number(req.headers['last-event-id'] ?? 0)
  const entry = { stream, from: lastId + 1, to: lastId, at: nowMs() }
  log.push(entry)
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  // the head goes now, not with the first event (node holds it until a write)
  res.flushHeaders()
  const state = { res, timer: null }
  open.add(state)
  const next = () => {
    state.timer = null
    if (frozen || res.destroyed) return
    // every event already due goes out now, in one write
    let text = ''
    const now = nowMs()
    while (t0 + (entry.to + 1) * every <= now) {
      const id = entry.to + 1
      text += `id: ${id}\ndata: ${NAME} ${t0 + id * every}\n\n`
      entry.to = id
    }
    if (text !== '') res.write(text)
    state.timer = setTimeout(next, Math.max(0, t0 + (entry.to + 1) * every - nowMs()))
  }
  res.once('close', () => {
    open.delete(state)
    if (state.timer !== null) clearTimeout(state.timer)
  })
  next()
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://upstream')
  if (url.pathname === '/events') events(req, res, url.searchParams)
  else res.writeHead(404).end()
})
server.keepAliveTimeout = 60_000

process.on('message', (message) => {
  if (message.type === 'freeze') {
    frozen = true
    for (const state of open) if (state.timer !== null) clearTimeout(state.timer)
    process.send({ type: 'freeze', log })
  } else if (message.type === 'die') {
    writeFileSync(process.env.LOG_FILE, JSON.stringify({ at: nowMs(), log }))
    process.kill(process.pid, 'SIGKILL')
  }
})

await serve(...httpServer(server))
