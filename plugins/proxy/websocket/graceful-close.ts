import type { Duplex } from 'node:stream'

/**
 * Ends a connection whose last response has been written. Unread client bytes are drained
 * first: closing a socket with unread input makes the kernel send RST, which can destroy the
 * response still in flight to the client.
 */
export function closeGracefully (socket: Duplex): void {
  if (socket.destroyed) return
  socket.resume()
  socket.end()
  if (socket.writableFinished) socket.destroy()
  else socket.once('finish', () => socket.destroy())
}
