import t, { type Test } from 'tap'
import { once } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type http2 from 'node:http2'
import net, { type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { createHash } from 'node:crypto'
import { portOf } from '../helpers/ws-servers.js'
import { extendedConnect, h2ConnectSession, h2ProxyApp, nextMessage, openH2WebSocket } from '../helpers/h2-websocket.js'
import { H2_MODES } from '../helpers/h2.js'
import { within } from '../helpers/bounded.js'

// An app's own `connect` listener that answers an HTTP/2 WebSocket stream a moment after the
// proxy took it (the proxy's check runs when the emit returns): whatever another listener did to
// the stream, the proxy checks before it writes, drops its upstream, and the process stays up.

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/** An upstream that hands each handshake (its socket and head) to the test, which answers it. */
async function heldUpstream (t: Test): Promise<{ port: number, next: () => Promise<{ socket: Socket, head: string }> }> {
  const waiting: Array<(got: { socket: Socket, head: string }) => void> = []
  const server = net.createServer(socket => {
    socket.on('error', () => {})
    let head = ''
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      socket.removeListener('data', onData)
      waiting.shift()?.({ socket, head })
    }
    socket.on('data', onData)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => server.close())
  return { port: portOf(server), next: async () => await new Promise(resolve => waiting.push(resolve)) }
}

function switchingProtocols (head: string): string {
  const key = /sec-websocket-key: (\S+)/i.exec(head)?.[1] ?? ''
  const accept = createHash('sha1').update(key + WEBSOCKET_GUID).digest('base64')
  return `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`
}

for (const mode of H2_MODES) {
  t.test(`${mode}: a stream another listener answered late is left to it, the upstream dropped`, async (t) => {
    const up = await heldUpstream(t)
    const { app, port } = await h2ProxyApp(t, mode, { upstream: `http://127.0.0.1:${up.port}` })
    let appAnswered = false
    app.server.on('connect', (req: IncomingMessage, res: Duplex | http2.Http2ServerResponse) => {
      if (req.url !== '/ws/late') return
      // After the emit returned, so after the proxy routed the stream: the app answers it itself.
      setTimeout(() => {
        (res as http2.Http2ServerResponse).writeHead(200, { 'x-by': 'app' })
        appAnswered = true
      }, 50)
    })
    const session = await h2ConnectSession(t, mode, port)
    const late = extendedConnect(session, '/ws/late')
    // The proxy's handshake reached the upstream, which holds its answer until the app answered.
    const first = await within(5000, up.next(), 'the proxy sent the handshake upstream')
    const response = await within(5000, late.response, 'the client got the app\'s answer')
    t.equal(response[':status'], 200)
    t.equal(response['x-by'], 'app', 'the client got the app\'s answer, not the proxy\'s')
    t.ok(appAnswered)
    const dropped = once(first.socket, 'close')
    first.socket.write(switchingProtocols(first.head))
    await within(5000, dropped, 'the proxy closed its upstream connection')

    // The process is alive and the proxy still tunnels, on the same session.
    const opening = openH2WebSocket(session, '/ws/echo')
    const second = await within(5000, up.next(), 'the second handshake reached the upstream')
    second.socket.write(switchingProtocols(second.head))
    const { ws } = await within(5000, opening, 'a second WebSocket opened')
    second.socket.write(Buffer.from([0x81, 0x02, 0x68, 0x69]))
    t.equal(await within(5000, nextMessage(ws), 'a message through the second tunnel'), 'hi')
    ws.terminate()
  })
}
