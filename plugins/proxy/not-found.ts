import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { PathNotFoundError } from './errors.js'
import { answerError } from './answer-error.js'

// Requests meant for a proxied prefix that reach none of its routes would get Fastify's default
// 404, a body without a `code`. Two kinds, each answered here with FST_STREAMLINE_PROXY_NOT_FOUND:
// - under the prefix, a method not in `httpMethods` (e.g. `PROPFIND /api/x`);
// - the prefix after a doubled slash (`//api/x`: a base URL ending in `/` joined with a path
//   starting with one). Fastify's router matches it to no route, as it does not start with `/api`.
// Fastify scopes a not-found handler to its context's prefix (`/api` and `/api/*`, `//api` and
// `//api/*`), and picks the most specific one: each kind gets a small context of its own beside
// the proxy's, and everything else still reaches the app's own 404 handler. A root prefix needs
// neither: its `/*` route takes every path.

/** Full prefixes that already have a handler, per server: Fastify refuses a second one for a prefix. */
const answered = new WeakMap<object, Set<string>>()

/** Adds the handlers for a registration whose own `prefix` option is `prefix`, beside it in `app`. */
export async function answerNotFound (app: FastifyInstance, prefix: string): Promise<void> {
  if (prefix === '/') return
  await app.register(notFoundContext, { prefix })
  await app.register(notFoundContext, { prefix: '/' + prefix })
}

async function notFoundContext (instance: FastifyInstance): Promise<void> {
  let prefixes = answered.get(instance.server)
  if (prefixes === undefined) answered.set(instance.server, prefixes = new Set())
  // Two registrations on one prefix (with different methods, say) share the first one's handler.
  if (prefixes.has(instance.prefix)) return
  prefixes.add(instance.prefix)
  instance.setNotFoundHandler(notFound)
}

function notFound (_request: FastifyRequest, reply: FastifyReply): void {
  answerError(reply, new PathNotFoundError())
}
