// Type test, checked by `tsc --noEmit` in `npm test` (not run by tap): a route's `config.deadline`
// is `RouteDeadlineConfig` (false, or an object of known options), wherever the config is typed
// as Fastify's route config. Each `@ts-expect-error` fails the check if the mistake compiles.
import Fastify, { type FastifyContextConfig } from 'fastify'
import { deadline, proxy, type RouteDeadlineConfig, type RouteDeadlineOptions } from '../../index.js'

function expectType<T> (value: T): T { return value }

const app = Fastify()
export async function register (): Promise<void> {
  await app.register(deadline, { timeout: 1000 })
  await app.register(proxy, { upstream: 'http://127.0.0.1:3000', config: { deadline: { timeout: 5000, streaming: false } } })
  await app.register(proxy, { upstream: 'http://127.0.0.1:3000', config: { deadline: false } })
  // @ts-expect-error a typo of an option in the proxy's route config: an excess property
  await app.register(proxy, { upstream: 'http://127.0.0.1:3000', config: { deadline: { tmeout: 5000 } } })
  // @ts-expect-error `true` is not a RouteDeadlineConfig
  await app.register(proxy, { upstream: 'http://127.0.0.1:3000', config: { deadline: true } })
}

// The allowed forms, by name.
expectType<RouteDeadlineConfig>(false)
expectType<RouteDeadlineConfig>({})
expectType<RouteDeadlineConfig>({ timeout: 1, streamIdleTimeout: 2, maxStreamDuration: 3, streaming: true })
expectType<RouteDeadlineConfig | undefined>(expectType<FastifyContextConfig>({}).deadline)
// @ts-expect-error true: a route without config.deadline already gets the plugin's options
expectType<RouteDeadlineConfig>(true)
// @ts-expect-error a number is not a timeout
expectType<RouteDeadlineConfig>(5000)
// @ts-expect-error a typo of an option: an excess property
expectType<RouteDeadlineConfig>({ tmeout: 5 })
// @ts-expect-error a typo of an option: an excess property
expectType<RouteDeadlineOptions>({ streamIdleTimout: 5 })
// @ts-expect-error times are numbers
expectType<RouteDeadlineConfig>({ timeout: '5s' })

// A config written apart from its route: a variable typed as Fastify's route config, or `satisfies`.
export const annotated: FastifyContextConfig = { deadline: { streaming: true } }
// @ts-expect-error a typo of an option: an excess property
export const typo: FastifyContextConfig = { deadline: { tmeout: 5 } }
// @ts-expect-error `true` is not a RouteDeadlineConfig
export const on: FastifyContextConfig = { deadline: true }
export const checked = { deadline: { timeout: 5 } } satisfies FastifyContextConfig
// @ts-expect-error a typo of an option: an excess property
export const checkedTypo = { deadline: { tmeout: 5 } } satisfies FastifyContextConfig
app.get('/annotated', { config: annotated }, async () => 'ok')

// Inline in the route: Fastify infers the config's own type from the literal and intersects it
// with FastifyContextConfig, so `true` fails here too (the `& object` in RouteDeadlineConfig)...
// @ts-expect-error `true` is not a RouteDeadlineConfig
app.get('/true', { config: { deadline: true } }, async () => 'ok')
// ...but there an unknown key (`{ tmeout: 5 }`) is part of the inferred type, not an excess
// property, so TypeScript accepts it: the plugin refuses it when the route is added (`Invalid
// deadline option config.deadline.tmeout: unknown option (did you mean timeout?)`,
// test/package/option-errors.test.ts).
app.get('/inline', { config: { deadline: { timeout: 5 } } }, async () => 'ok')
