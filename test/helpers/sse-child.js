// An event-stream upstream in its own process, to be killed mid-stream and started again on the
// same port: what a replica restarted by a deploy looks like. Plain JavaScript, run with `node`.
// argv[2]: the port (0: any). Prints `listening <port>`, then `request <last-event-id or ->` per
// request. /feed: events from Last-Event-ID + 1 on, one every 20 ms, each written in two pieces
// (so that a kill may land inside an event).
import http from 'node:http'

const server = http.createServer((req, res) => {
  const last = req.headers['last-event-id']
  console.log(`request ${last ?? '-'}`)
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  let n = last === undefined ? 0 : Number(last)
  const timer = setInterval(() => {
    n++
    res.write(`id: ${n}\ndata: event `)
    setTimeout(() => res.write(`${n}\n\n`), 5)
  }, 20)
  res.on('close', () => clearInterval(timer))
})
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => console.log(`listening ${server.address().port}`))
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
