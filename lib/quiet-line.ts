import type { FastifyBaseLogger } from 'fastify'

/**
 * A child of `log` that writes one known line at `debug` instead of `level` when `when(obj)` holds,
 * and everything else unchanged. For a request whose failure has already been logged once (a
 * deadline expiry, an upstream fault), so that Fastify or reply-from do not log it a second time.
 * Called on that failure path only: the child and its closure cost nothing on other requests.
 */
export function quietLine (log: FastifyBaseLogger, level: 'warn' | 'error', msg: string, when: (obj: unknown) => boolean): FastifyBaseLogger {
  // A view of `log` (what pino's child() is without bindings), never `log.child({})`: that may
  // return a shared instance (Fastify's `logger: false` does, for every request), and patching
  // it would chain one wrapper per call onto it, forever.
  const child: FastifyBaseLogger = Object.create(log)
  const write = log[level].bind(log)
  child[level] = function (this: unknown, obj: unknown, message?: unknown, ...rest: unknown[]): void {
    if (message === msg && when(obj)) child.debug(obj as object, msg)
    else write(obj as object, message as string, ...rest)
  } as FastifyBaseLogger['warn']
  return child
}
