import net from 'node:net'
import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import type { Test } from 'tap'
import { within } from './bounded.js'

// A local address whose TCP connects never complete, without any network: a listening socket
// with a backlog of 1 that nobody accepts on (its thread's event loop is held), its accept queue
// filled by connects of our own. Linux then drops each further SYN, so a client's connect waits
// for its retransmits (a second, then three...) and only a connect timeout ends it.

const LISTENER = `
const net = require('node:net')
const { parentPort, workerData } = require('node:worker_threads')
const server = net.createServer()
server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
  parentPort.postMessage(server.address().port)
  // Held until the test ends: nothing on this thread accepts a connection.
  Atomics.wait(workerData, 0, 0)
})
`

/** How long a filling connect may stay pending before the accept queue counts as full. */
const PENDING = 200

export async function unacceptingUrl (t: Test): Promise<string> {
  const hold = new Int32Array(new SharedArrayBuffer(4))
  const worker = new Worker(LISTENER, { eval: true, workerData: hold })
  const fillers: net.Socket[] = []
  t.teardown(async () => {
    for (const socket of fillers) socket.destroy()
    Atomics.store(hold, 0, 1)
    Atomics.notify(hold, 0)
    await worker.terminate()
  })
  const [port] = await within(5000, once(worker, 'message'), 'the unaccepting listener\'s port') as [number]
  // Connects until one stays pending: the queue is full (backlog + 1 on Linux; a few more tries at most).
  for (let i = 0; i < 16; i++) {
    const socket = net.connect({ port, host: '127.0.0.1' })
    socket.on('error', () => {})
    fillers.push(socket)
    const connected = await Promise.race([once(socket, 'connect').then(() => true), new Promise(resolve => setTimeout(resolve, PENDING, false))])
    if (connected !== true) return `http://127.0.0.1:${port}`
  }
  throw new Error('the accept queue never filled: every connect completed')
}
