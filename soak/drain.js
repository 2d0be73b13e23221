// The soak's last phase: `app.close()` with traffic still open on the proxy it has just measured.
// Event streams, endless downloads and WebSocket tunnels are open when the runner asks the proxy
// child to drain: the child must exit within drainTimeout + 1 s, each event stream must end
// cleanly after its `retry:` field, each download must be cut (no last chunk), each tunnel must
// get `1001 Going Away`.
import { once } from 'node:events'
import { check, connect, head, openTunnel, receivedAtLeast, within } from './clients.js'

export const DRAIN_TIMEOUT = 1500
const STREAMS = 5
const DOWNLOADS = 3
const TUNNELS = 3

async function openResponse (port, path, id) {
  const connection = await connect(port)
  connection.socket.write(head('GET', path, id))
  await receivedAtLeast(connection, 100)
  return connection
}

const range = (n) => Array.from({ length: n }, (_, i) => i)

/** Opens the traffic, drains the proxy child, and returns { ms, failures } (failures: what went wrong). */
export async function drainPhase (port, child) {
  const streams = await Promise.all(range(STREAMS).map((i) => openResponse(port, '/api/events', `drain-sse-${i}`)))
  const downloads = await Promise.all(range(DOWNLOADS).map((i) => openResponse(port, '/api/stream', `drain-dl-${i}`)))
  const tunnels = await Promise.all(range(TUNNELS).map((i) => openTunnel(port, `drain-ws-${i}`)))
  const started = Date.now()
  const exited = once(child, 'exit')
  child.send({ type: 'drain' })
  const failures = []
  try {
    await within(exited, DRAIN_TIMEOUT + 5000, 'the proxy child to exit after the drain')
    const ms = Date.now() - started
    if (ms > DRAIN_TIMEOUT + 1000) failures.push(`exited ${ms} ms after the drain began (drainTimeout ${DRAIN_TIMEOUT})`)
    await Promise.all([...streams, ...downloads].map((c) => within(c.closed, 2000, 'a drained connection to close')))
    for (const c of streams) expect(failures, c.received().toString('latin1').endsWith('retry: 1000\n\n\r\n0\r\n\r\n'), 'an event stream ends cleanly after retry: 1000')
    for (const c of downloads) expect(failures, !c.received().toString('latin1').endsWith('0\r\n\r\n'), 'a download is cut, never ended as complete')
    for (const { closed } of tunnels) {
      const [code] = await within(closed, 2000, 'a tunnel to close')
      expect(failures, code === 1001, `a tunnel gets 1001 (got ${code})`)
    }
    return { ms, failures }
  } catch (err) {
    failures.push(err.message)
    return { ms: Date.now() - started, failures }
  }
}

function expect (failures, condition, what) {
  try {
    check(condition, what)
  } catch {
    if (!failures.includes(what)) failures.push(what)
  }
}
