import type { FastifyInstance } from 'fastify'

const installed = new Map<string, WeakSet<object>>()

/**
 * Puts `listener` first among the app server's `event` listeners, once per server however many
 * registrations ask (they share one dispatch), and takes it off when the app closes. Returns
 * false when it was already there. First, so that it can see what the other listeners then do.
 * (`any[]`: Node's own listener type for server events; internal, never exported.)
 */
export function listenFirst (app: FastifyInstance, event: 'upgrade' | 'connect', listener: (...args: any[]) => void): boolean {
  const server = app.server
  let servers = installed.get(event)
  if (servers === undefined) installed.set(event, servers = new WeakSet())
  if (servers.has(server)) return false
  servers.add(server)
  server.prependListener(event, listener)
  app.addHook('onClose', (_instance, done) => {
    server.removeListener(event, listener)
    servers.delete(server)
    done()
  })
  return true
}
