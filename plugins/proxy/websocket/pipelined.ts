import type { FastifyInstance } from 'fastify'
import type { Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { closeGracefully } from './graceful-close.js'

/** A socket of Node's HTTP server: the response being written on it, if any (Node's own field). */
export interface HttpSocket extends Duplex {
  _httpMessage?: ServerResponse | null
  setTimeout?: (ms: number) => void
}

/** Whether answers to requests before this upgrade are still being written on its connection (or it is closing). */
export function answersPending (socket: Duplex): boolean {
  return (socket as HttpSocket)._httpMessage != null || !socket.writable
}

/**
 * Keeps an upgrade pipelined behind requests still being answered on its connection from every
 * 'upgrade' listener until those answers are written, then emits it to them all, as if it had
 * just arrived on an idle connection. A listener that binds a response to the socket at once
 * (@fastify/websocket) would otherwise fail (binding one to a socket another response holds
 * throws) and drop the upgrade with the connection unread; one that writes its 101 at once
 * would put it before the answers. Listeners run in one emit that none of them can stop, so
 * the hold wraps the server's `emit`: one string comparison per server event (no allocation:
 * `arguments` passed through), once per server, restored when the app closes.
 */
export function holdPipelinedUpgrades (app: FastifyInstance): void {
  const server = app.server as Server
  const emit = server.emit
  const holding = function (this: Server, event: string | symbol): boolean {
    if (event !== 'upgrade' || !answersPending(arguments[2] as Duplex)) return Reflect.apply(emit, this, arguments) as boolean
    // ('upgrade', request, socket, head): emitted again, unchanged, once the answers are written;
    // nobody left to take it (the app closed meanwhile) closes the connection.
    const args = Array.from(arguments)
    const socket = args[2] as Duplex
    afterPendingResponses(server, socket, () => {
      if (Reflect.apply(emit, server, args) !== true) socket.destroy()
    })
    return true
  }
  server.emit = holding
  app.addHook('onClose', (_instance, done) => {
    // Another wrapper put over ours after it stays, and calls ours (which then only passes on).
    if (server.emit === holding) server.emit = emit
    done()
  })
}

/**
 * Runs `next` once the requests pipelined before the upgrade on this keep-alive connection
 * have all been answered, so that answers go out in order and the upgrade's own response can
 * take the socket (binding one to a socket another response holds throws). Node keeps the
 * head response in `socket._httpMessage` and the others in a private queue; the 'finish'
 * listener Node adds to each response before any user code detaches it and binds the next,
 * so ours, running after it, sees the next holder or none. Node took its own socket listeners
 * away before 'upgrade', so until then this one forwards 'drain' (or a large pending response
 * would stall), destroys the socket on an error (a client's reset), and drops the upgrade if
 * the client goes away or the last answer closed the connection (`Connection: close`), as
 * Node would drop a pipelined request. Nothing reads the socket meanwhile (the bytes after
 * the handshake belong to the upgrade), so a client's FIN is seen by whoever takes it next.
 */
export function afterPendingResponses (server: Server, socket: Duplex, next: () => void): void {
  const held = socket as HttpSocket
  let holder: ServerResponse | null = null
  const stop = (): void => {
    holder?.removeListener('finish', onFinish)
    socket.removeListener('drain', onDrain)
    socket.removeListener('error', destroyOnError)
    socket.removeListener('close', stop)
  }
  // What Node's own (removed) 'drain' listener does, minus resetting its private need-drain
  // flag: a later socket 'drain' may repeat the event, which a piping writer ignores.
  const onDrain = (): void => {
    if (held._httpMessage?.writableNeedDrain === true) held._httpMessage.emit('drain')
  }
  const onFinish = (): void => {
    holder = held._httpMessage ?? null
    if (holder !== null) {
      holder.once('finish', onFinish)
      return
    }
    stop()
    if (!socket.writable) return closeGracefully(socket)
    // Node armed its keep-alive timeout for an idle connection; this one has a request. Node
    // would have reset it on reading the upgrade's bytes: the same, now that they are served.
    held.setTimeout?.(server.timeout ?? 0)
    next()
  }
  if (socket.destroyed) return
  socket.on('error', destroyOnError)
  socket.on('drain', onDrain)
  socket.once('close', stop)
  onFinish()
}

function destroyOnError (this: Duplex): void {
  this.destroy()
}
