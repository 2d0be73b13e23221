// An upstream in its own process whose streams never end: what a real backend looks like to an
// ingress that shuts down. Plain JavaScript, run with `node`, so that it needs no TypeScript loader.
// Prints `listening <port>` once ready, then one line per thing it saw (`open /sse`,
// `closed /sse after 12 writes`...). Commands on stdin: `more` makes /held send its next piece.
//   /sse       an event every 20 ms, each written in two or three pieces cut anywhere
//   /held      `id: 1` complete, then `id: 2` half; on `more`: the rest of 2 and half of 3, never more
//   /download  a 16 KB chunk every 20 ms, chunked, forever
//   /slow      200 "done" after ?ms= milliseconds
import http from 'node:http'
import { createInterface } from 'node:readline'

const SSE_HEAD = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }
const held = []

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://upstream')
  console.log(`open ${url.pathname}`)
  let writes = 0
  const write = (data) => { writes++; res.write(data) }
  let timer = null
  res.on('close', () => {
    clearInterval(timer)
    console.log(`${res.writableFinished ? 'finished' : 'closed'} ${url.pathname} after ${writes} writes`)
  })
  if (url.pathname === '/sse') {
    res.writeHead(200, SSE_HEAD)
    let n = 0
    timer = setInterval(() => {
      n++
      // CRLF and LF mixed, as the format allows; a comment line of varying length moves the cuts.
      const event = `id: ${n}\r\ndata: {"n":${n}}\r\n: pad ${'x'.repeat(n % 50)}\n\n`
      const cut1 = 1 + (n * 7) % (event.length - 1)
      const cut2 = Math.min(event.length, cut1 + 1 + (n * 13) % 20)
      write(event.slice(0, cut1))
      write(event.slice(cut1, cut2))
      if (cut2 < event.length) write(event.slice(cut2))
    }, 20)
  } else if (url.pathname === '/held') {
    res.writeHead(200, SSE_HEAD)
    write('id: 1\ndata: one\n\nid: 2\ndata: tw')
    held.push(() => write('o\n\nid: 3\ndata: thr'))
  } else if (url.pathname === '/download') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    const chunk = Buffer.alloc(16 * 1024, 'd')
    timer = setInterval(() => write(chunk), 20)
  } else if (url.pathname === '/slow') {
    timer = setTimeout(() => res.end('done'), Number(url.searchParams.get('ms') ?? 500))
  } else {
    res.writeHead(404).end()
  }
})

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'more') for (const send of held.splice(0)) send()
})
// The test's end closes stdin: no orphan is left behind if the test process dies.
process.stdin.on('end', () => process.exit(0))

server.listen(0, '127.0.0.1', () => console.log(`listening ${server.address().port}`))
