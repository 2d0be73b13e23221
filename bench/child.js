// The child side of startServer (lib/children.js): listen on 127.0.0.1, report the port, answer the
// parent's 'mem' and 'stop' messages. Imported only by the server-*.js scripts.
import { once } from 'node:events'

/**
 * `listen` resolves to the bound port (or to `{ port, ports }` for a server on several ports);
 * `close` runs on the parent's 'stop' before the process exits.
 */
export async function serve (listen, close) {
  const bound = await listen()
  const { port, ports = [port] } = typeof bound === 'number' ? { port: bound } : bound
  process.on('message', async (message) => {
    if (message.type === 'mem') {
      globalThis.gc?.()
      const { rss, heapUsed, arrayBuffers } = process.memoryUsage()
      process.send({ type: 'mem', rss, heapUsed, arrayBuffers })
    } else if (message.type === 'stop') {
      // exit even if close() stalls on open connections; process.exit still writes a --cpu-prof profile
      setTimeout(() => process.exit(0), 2000).unref()
      await close()
      process.exit(0)
    }
  })
  process.on('disconnect', () => process.exit(0))
  process.send({ type: 'ready', port, ports })
}

/** listen/close for a plain node:http server. */
export function httpServer (server) {
  return [
    async () => {
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      return server.address().port
    },
    async () => {
      server.closeAllConnections()
      server.close()
    }
  ]
}

/** listen/close for a Fastify app. */
export function fastifyServer (app) {
  return [
    async () => {
      await app.listen({ port: 0, host: '127.0.0.1' })
      return app.server.address().port
    },
    async () => {
      app.server.closeAllConnections?.()
      await app.close()
    }
  ]
}
