import Fastify from 'fastify'
import type { deadline } from '../../index.js'
import proxy, { type ProxyOptions } from '../../plugins/proxy/index.js'

/** The error `app.register(plugin, options)` fails with (options as a user's JavaScript may pass them); throws if accepted. */
export async function registrationError (plugin: typeof deadline | typeof proxy, options: Record<string, unknown>): Promise<Error & { code?: string }> {
  const app = Fastify()
  app.register(plugin as typeof proxy, options as unknown as ProxyOptions)
  const err = await app.ready().then(() => null, (e: Error & { code?: string }) => e)
  await app.close()
  if (err === null) throw new Error(`accepted: ${JSON.stringify(options)}`)
  return err
}
