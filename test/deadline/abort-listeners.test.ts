// onRequestAbort, the proxy's per-request hook into the deadline: listeners are functions or
// objects with abort(reason), each told once, on routes with and without a deadline.
import { once } from 'node:events'
import net from 'node:net'
import t from 'tap'
import { ClientDisconnectedError, DeadlineExceededError } from '../../plugins/deadline/index.js'
import { onRequestAbort } from '../../plugins/deadline/access.js'
import { deadlineApp, listen } from '../helpers/deadline-app.js'
import { receiveWithin, within } from '../helpers/bounded.js'

interface Told { name: string, reason: Error }

/** Two listeners of each kind, recording what they are told. */
function listeners (told: Told[]): Array<((reason: Error) => void) | { abort: (reason: Error) => void }> {
  return [
    (reason) => { told.push({ name: 'function 1', reason }) },
    { abort: (reason) => { told.push({ name: 'object 1', reason }) } },
    (reason) => { told.push({ name: 'function 2', reason }) },
    { abort: (reason) => { told.push({ name: 'object 2', reason }) } }
  ]
}

t.test('on expiry every listener is told once, and one added afterwards at once', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 300 })
  const told: Told[] = []
  let tellLate: (reason: Error) => void = () => {}
  const late = new Promise<Error>((resolve) => { tellLate = resolve })
  app.get('/slow', async (req, reply) => {
    for (const listener of listeners(told)) onRequestAbort(req, reply, listener)
    await once(reply.raw, 'close')
    onRequestAbort(req, reply, { abort: tellLate })
    return 'too late'
  })
  const base = await listen(app)
  const res = await receiveWithin(`${base}/slow`)
  t.equal(res.status, 504, 'the client got the 504')
  t.same(told.map((entry) => entry.name), ['function 1', 'object 1', 'function 2', 'object 2'], 'each told once, in order')
  for (const entry of told) t.ok(entry.reason instanceof DeadlineExceededError, `${entry.name}: DeadlineExceededError`)
  t.ok(await within(5000, late, 'the late listener being told') instanceof DeadlineExceededError, 'a listener added after the expiry is told at once')
  t.equal((await receiveWithin(`${base}/slow`)).status, 504, 'the process still serves')
})

t.test('without a deadline: told once when the client leaves, never when the response completes', async (t) => {
  const { app } = await deadlineApp(t, { timeout: 5000 })
  const told: Told[] = []
  const finished: Told[] = []
  let arrived: () => void = () => {}
  const inHandler = new Promise<void>((resolve) => { arrived = resolve })
  const closed = new Promise<void>((resolve) => {
    app.get('/out', { config: { deadline: false } }, async (req, reply) => {
      for (const listener of listeners(told)) onRequestAbort(req, reply, listener)
      reply.raw.on('close', () => setImmediate(resolve))
      arrived()
      await once(reply.raw, 'close')
      return 'unreachable'
    })
  })
  app.get('/done', { config: { deadline: false } }, async (req, reply) => {
    for (const listener of listeners(finished)) onRequestAbort(req, reply, listener)
    return 'done'
  })
  const base = await listen(app)
  const socket = net.connect(Number(new URL(base).port), '127.0.0.1')
  socket.write('GET /out HTTP/1.1\r\nHost: x\r\n\r\n')
  await within(5000, inHandler, 'the request reaching its handler')
  socket.destroy()
  await within(5000, closed, 'the response closing after the client left')
  t.same(told.map((entry) => entry.name), ['function 1', 'object 1', 'function 2', 'object 2'], 'each told once, in order')
  for (const entry of told) t.ok(entry.reason instanceof ClientDisconnectedError, `${entry.name}: ClientDisconnectedError`)
  const res = await receiveWithin(`${base}/done`)
  t.equal(res.body, 'done', 'the client got the whole response')
  t.same(finished, [], 'a completed response tells no one')
})
