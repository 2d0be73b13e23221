// The soak's mix: every kind of operation, its weight in the mix, and what the client must get
// and the upstream must see. `ctx` is { port, up, agent, held(id) } (see run.js). An operation
// throws `Unexpected` when an outcome is wrong; ids that must never reach the upstream are
// checked by the runner once everything has settled (`neverUpstream`).
import { CHUNK } from './upstream.js'
import { check, connect, exchange, head, openTunnel, parse, receivedAtLeast, request, upgradeHead } from './clients.js'

const UPLOAD = Buffer.alloc(64 * 1024, 'p')
const CHUNKED = 'Transfer-Encoding: chunked'

/** Client aborts after the request reached the upstream: the upstream must see its response cut. */
async function abortAfter (ctx, id, text, ready) {
  const connection = await connect(ctx.port)
  connection.socket.write(text)
  await ready(connection)
  connection.socket.resetAndDestroy()
  await connection.closed
  await ctx.up.when(id, 'cut')
}

export const KINDS = {
  'healthy GET': {
    weight: 14,
    async run (ctx, id) {
      const res = await request(ctx.agent, ctx.port, 'GET', '/api/ok', id)
      check(res.status === 200 && res.body.toString() === 'ok\n', `got ${res.status} ${res.body}`)
      await ctx.up.when(id, 'finished')
    }
  },
  'healthy POST 64 KiB echo': {
    weight: 6,
    async run (ctx, id) {
      const res = await request(ctx.agent, ctx.port, 'POST', '/api/echo', id, UPLOAD)
      check(res.status === 200 && res.body.equals(UPLOAD), `got ${res.status}, ${res.body.length} bytes`)
      await ctx.up.when(id, 'finished')
    }
  },
  'healthy WebSocket': {
    weight: 4,
    async run (ctx, id) {
      const { ws, closed } = await openTunnel(ctx.port, id)
      ws.close(1000)
      const [code] = await closed
      check(code === 1000, `close code ${code}`)
      await ctx.up.when(id, 'ws-closed')
    }
  },
  'client abort: head not finished': {
    weight: 5,
    neverUpstream: true,
    async run (ctx, id) {
      const { socket, closed } = await connect(ctx.port)
      socket.write(head('GET', '/api/ok', id).slice(0, -2)) // the blank line never comes
      socket.resetAndDestroy()
      await closed
    }
  },
  'client abort: in a preHandler, before upstream': {
    weight: 5,
    neverUpstream: true,
    async run (ctx, id) {
      const { socket, closed } = await connect(ctx.port)
      const held = ctx.held(id)
      socket.write(head('GET', '/held/ok', id))
      await held
      socket.resetAndDestroy()
      await closed
    }
  },
  'client abort: waiting for upstream headers': {
    weight: 8,
    run: (ctx, id) => abortAfter(ctx, id, head('GET', '/api/hang', id), () => ctx.up.when(id, 'request'))
  },
  'client abort: mid-download': {
    weight: 8,
    // the client has the head and the first body bytes, the upstream's response is still open
    run: (ctx, id) => abortAfter(ctx, id, head('GET', '/api/stream', id), (connection) => receivedAtLeast(connection, CHUNK.length))
  },
  'client abort: mid-upload': {
    weight: 8,
    run: (ctx, id) => abortAfter(ctx, id, `${head('POST', '/api/upload', id, [CHUNKED])}4000\r\n${'p'.repeat(0x4000)}\r\n`,
      () => ctx.up.when(id, 'data'))
  },
  'upstream reset before headers': {
    weight: 8,
    async run (ctx, id) {
      const res = await exchange(ctx.port, head('GET', '/api/reset', id, ['Connection: close']))
      check(res.status === 502 && res.body.includes('FST_STREAMLINE_UPSTREAM_UNAVAILABLE'), `got ${res.status} ${res.body}`)
      await ctx.up.when(id, 'request')
    }
  },
  'upstream reset mid-body': {
    weight: 8,
    async run (ctx, id) {
      const connection = await connect(ctx.port)
      connection.socket.write(head('GET', '/api/reset-mid', id))
      await receivedAtLeast(connection, CHUNK.length)
      ctx.up.reset(id)
      await connection.closed
      const res = parse(connection.received())
      check(res.status === 200 && res.head.includes(`content-length: ${CHUNK.length * 4}`), `got ${res.status}`)
      check(res.body.length < CHUNK.length * 4, `a cut body must arrive short, got ${res.body.length} bytes`)
      await ctx.up.when(id, 'cut')
    }
  },
  'WebSocket upgrade refused (403)': {
    weight: 6,
    async run (ctx, id) {
      const res = await exchange(ctx.port, upgradeHead('/api/ws/refuse', id))
      check(res.status === 403 && res.body.toString() === 'refused', `got ${res.status} ${res.body}`)
      await ctx.up.when(id, 'upgrade')
    }
  },
  'deadline: 504 before headers': {
    weight: 6,
    async run (ctx, id) {
      const res = await exchange(ctx.port, head('GET', '/short/hang', id, ['Connection: close']))
      check(res.status === 504 && res.body.includes('FST_STREAMLINE_DEADLINE_EXCEEDED'), `got ${res.status} ${res.body}`)
      // On a loaded machine the deadline can pass before the request reaches the upstream; one
      // that arrives later and is never cancelled stays open, and the connection count shows it.
      if (ctx.up.seen(id, 'request')) await ctx.up.when(id, 'cut')
    }
  },
  'deadline: stream cut when idle': {
    weight: 4,
    async run (ctx, id) {
      const connection = await connect(ctx.port)
      connection.socket.write(head('GET', '/idle/stream', id))
      await receivedAtLeast(connection, CHUNK.length)
      await connection.closed
      const res = parse(connection.received())
      check(res.status === 200 && !res.body.subarray(-5).equals(Buffer.from('0\r\n\r\n')), 'the stream must be cut, not ended')
      await ctx.up.when(id, 'cut')
    }
  },
  'tunnel killed by the client': {
    weight: 5,
    async run (ctx, id) {
      const { ws, closed } = await openTunnel(ctx.port, id)
      ws.terminate()
      await closed
      await ctx.up.when(id, 'ws-closed')
    }
  },
  'tunnel killed by the upstream': {
    weight: 5,
    async run (ctx, id) {
      const { closed } = await openTunnel(ctx.port, id)
      ctx.up.killTunnel(id)
      const [code] = await closed
      check(code === 1006, `the client must see the cut (1006), got ${code}`)
      await ctx.up.when(id, 'ws-closed')
    }
  }
  // The drain (app.close() with traffic open) ends the proxy's server: it is the run's last phase, soak/drain.js.
}
