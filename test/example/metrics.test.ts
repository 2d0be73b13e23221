// The example's /metrics, fed only from the diagnostics channels: what happened through the
// ingress shows up as counters, from outside, as Prometheus would scrape it.
import t from 'tap'
import { Agent, request } from 'undici'
import { WebSocket } from 'ws'
import { once } from 'node:events'
import { startExample } from '../helpers/example-app.js'
import { within } from '../helpers/bounded.js'

// Bounds every wait for a head or the next body chunk (undici's own timeouts are 5 minutes).
const agent = new Agent({ headersTimeout: 10_000, bodyTimeout: 10_000 })
const get = async (url: string): ReturnType<typeof request> => await request(url, { dispatcher: agent })

function sample (text: string, line: RegExp): number {
  const match = line.exec(text)
  return match === null ? 0 : Number(match[1])
}

t.test('/metrics counts expiries, stream ends, disconnects and tunnels', async (t) => {
  const app = await startExample(t, { DEADLINE_TIMEOUT_MS: '500', TICK_MS: '50' })
  t.teardown(async () => await agent.close())
  const slow = await get(`${app.ingress}/files/slow`)
  t.equal(slow.statusCode, 504)
  await slow.body.dump()

  const ticker = await get(`${app.ingress}/live/ticker`)
  for await (const chunk of ticker.body) if (String(chunk).includes('id: 3')) break
  ticker.body.destroy()

  const ws = new WebSocket(`${app.ingress.replace('http', 'ws')}/live/chat`)
  await within(10_000, once(ws, 'open'), 'the tunnel opening')
  const during = await (await get(`${app.ingress}/metrics`)).body.text()
  t.equal(sample(during, /^ingress_open_tunnels (\d+)$/m), 1, 'one tunnel open')
  ws.close()
  await within(10_000, once(ws, 'close'), 'the tunnel\'s close')

  // The ticker's end and the tunnel's close are published when the ingress sees the sockets
  // close, a moment after the client did: a bounded number of scrapes, as Prometheus would.
  let text = ''
  const settled = (): boolean => sample(text, /^ingress_stream_seconds_count\{ended_by="client"\} (\d+)$/m) === 1 &&
    sample(text, /^ingress_open_tunnels (\d+)$/m) === 0
  for (let i = 0; i < 100 && !settled(); i++) text = await (await get(`${app.ingress}/metrics`)).body.text()
  t.equal(sample(text, /^ingress_deadline_expired_total\{phase="response",outcome="504"\} (\d+)$/m), 1, 'the 504')
  t.equal(sample(text, /^ingress_stream_seconds_count\{ended_by="client"\} (\d+)$/m), 1, 'the ticker, ended by its client')
  t.equal(sample(text, /^ingress_client_disconnects_total\{phase="stream"\} (\d+)$/m), 1, 'counted as a disconnect mid-stream')
  t.ok(sample(text, /^ingress_upstream_head_seconds_count (\d+)$/m) >= 1, 'upstream head latency observed')
  t.equal(sample(text, /^ingress_open_streams (\d+)$/m), 0, 'no stream left open')
  t.equal(sample(text, /^ingress_open_tunnels (\d+)$/m), 0, 'no tunnel left open')
  // The client began the close handshake: the tunnel was closed by the client, although the
  // upstream, as the server side, closes its TCP connection first.
  t.equal(sample(text, /^ingress_tunnel_seconds_count\{closed_by="client"\} (\d+)$/m), 1, 'the tunnel\'s duration, once, closed by the client')
  t.equal((await within(15_000, app.stop(), 'the example\'s exit after SIGTERM')).code, 0)
})
