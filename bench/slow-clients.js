// The attacker side of bench/slowloris.js, in its own process so that its writes never delay the
// healthy client being measured. Opens SLOW_HEADS connections that trickle a request head and
// SLOW_BODIES that trickle a body, one piece every TRICKLE_MS (each on its own phase), and
// reopens each one the server drops. Messages: sends { type: 'ready', open } once all are open;
// on { type: 'stop' } it closes everything and sends { type: 'drops', drops }.
import net from 'node:net'

const port = Number(process.env.PORT)
const SLOW_HEADS = Number(process.env.SLOW_HEADS)
const SLOW_BODIES = Number(process.env.SLOW_BODIES)
const TRICKLE_MS = Number(process.env.TRICKLE_MS)

const HEAD = 'GET /small HTTP/1.1\r\nhost: ingress\r\n'
const UPLOAD = 'POST /upload HTTP/1.1\r\nhost: ingress\r\ncontent-type: application/octet-stream\r\ncontent-length: 1000000\r\n\r\n'
const sockets = new Set()
const drops = []
let running = true

function slowClient (kind) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    const drop = { kind, connectedAt: 0, closedAt: 0, status: 'none', byServer: false }
    let timer
    sockets.add(socket)
    socket.setEncoding('latin1')
    socket.once('data', (data) => { drop.status = data.slice(9, 12) })
    socket.on('end', () => { drop.byServer = true })
    socket.on('error', () => { drop.byServer = true })
    socket.once('connect', () => {
      drop.connectedAt = Date.now()
      socket.write(kind === 'head' ? HEAD : UPLOAD)
      const drip = kind === 'head' ? 'x-a: b\r\n' : 'b'
      timer = setTimeout(function trickle () {
        socket.write(drip)
        timer = setTimeout(trickle, TRICKLE_MS)
      }, Math.random() * TRICKLE_MS)
      resolve()
    })
    socket.once('close', () => {
      clearTimeout(timer)
      sockets.delete(socket)
      drop.closedAt = Date.now()
      if (drop.connectedAt > 0) drops.push(drop)
      if (running) slowClient(kind)
    })
  })
}

const opening = []
for (let i = 0; i < SLOW_HEADS + SLOW_BODIES; i++) {
  opening.push(slowClient(i < SLOW_HEADS ? 'head' : 'body'))
  // in batches, so that the listen backlog never overflows
  if (opening.length % 100 === 0) await Promise.all(opening.slice(-100))
}
await Promise.all(opening)
process.send({ type: 'ready', open: sockets.size })

process.on('message', (message) => {
  if (message.type !== 'stop') return
  running = false
  for (const socket of sockets) socket.destroy()
  process.send({ type: 'drops', drops }, () => process.exit(0))
})
process.on('disconnect', () => process.exit(0))
