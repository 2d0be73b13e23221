import net from 'node:net'
import { once } from 'node:events'
import { PROMPTLY, within } from './bounded.js'

/** A raw client: sends a GET and collects the bytes received, as latin1 (one char per byte); `waitFor` is bounded. */
export function rawGet (url: string, path: string): { socket: net.Socket, received: () => string, waitFor: (text: string) => Promise<void> } {
  const socket = net.connect(Number(new URL(url).port), '127.0.0.1')
  let received = ''
  socket.setEncoding('latin1')
  socket.on('error', () => {})
  socket.on('data', (data: string) => { received += data; socket.emit('progress') })
  socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`)
  const waitFor = async (text: string): Promise<void> => {
    const arrived = (async () => { while (!received.includes(text)) await once(socket, 'progress') })()
    await within(PROMPTLY, arrived, `the client got ${JSON.stringify(text)}; it has ${JSON.stringify(received.slice(-200))}`)
  }
  return { socket, received: () => received, waitFor }
}
