import { InvalidDeadlineOptionError } from './errors.js'
import type { DeadlineOptions, DeadlineSettings, RouteDeadlineOptions } from './types.js'
import { describeValue, optionChecks } from '../../lib/option-checks.js'

const { duration, flag, knownKeys } = optionChecks(InvalidDeadlineOptionError)

const DEFAULTS = {
  timeout: 30_000,
  streamIdleTimeout: 60_000,
  maxStreamDuration: 0,
  statusCode: 504,
  propagationHeader: 'x-request-timeout-ms'
}

const always = (): boolean => true

// Fastify's own register options (`logLevel`, `logSerializers`) arrive here too; anything else
// unknown is a typo (`tmeout`) that would otherwise silently leave the default in force.
const PLUGIN_OPTIONS = new Set(['timeout', 'streamIdleTimeout', 'maxStreamDuration', 'statusCode', 'trustIncoming',
  'propagationHeader', 'logLevel', 'logSerializers'])
const ROUTE_OPTIONS = new Set(['timeout', 'streamIdleTimeout', 'maxStreamDuration', 'streaming'])

export function resolvePluginOptions (options: DeadlineOptions): DeadlineSettings {
  if (typeof options !== 'object' || options === null) throw new InvalidDeadlineOptionError('options', `expected an object, got ${describeValue(options)}`)
  knownKeys('', options, PLUGIN_OPTIONS)
  const settings: DeadlineSettings = {
    timeout: duration('timeout', options.timeout, DEFAULTS.timeout),
    streamIdleTimeout: duration('streamIdleTimeout', options.streamIdleTimeout, DEFAULTS.streamIdleTimeout),
    maxStreamDuration: duration('maxStreamDuration', options.maxStreamDuration, DEFAULTS.maxStreamDuration),
    streaming: false,
    statusCode: options.statusCode ?? DEFAULTS.statusCode,
    trustIncoming: trustFunction(options.trustIncoming),
    propagationHeader: headerName(options.propagationHeader)
  }
  if (!Number.isInteger(settings.statusCode) || settings.statusCode < 400 || settings.statusCode > 599) {
    throw new InvalidDeadlineOptionError('statusCode', `expected an integer from 400 to 599, got ${describeValue(options.statusCode)}`)
  }
  return settings
}

/** Applies a route's `config.deadline` object over the plugin settings (`false` never gets here). */
export function resolveRouteOptions (base: DeadlineSettings, route: RouteDeadlineOptions | undefined): DeadlineSettings {
  if (route === undefined) return base
  // `true` included: it reads as "on, with defaults" but is not a value the README gives, and a
  // route that omits `config.deadline` already gets the defaults.
  if (typeof route !== 'object' || route === null || Array.isArray(route)) {
    throw new InvalidDeadlineOptionError('config.deadline', `expected false or an object, got ${describeValue(route)}`)
  }
  knownKeys('config.deadline.', route, ROUTE_OPTIONS)
  return {
    ...base,
    timeout: duration('config.deadline.timeout', route.timeout, base.timeout),
    streamIdleTimeout: duration('config.deadline.streamIdleTimeout', route.streamIdleTimeout, base.streamIdleTimeout),
    maxStreamDuration: duration('config.deadline.maxStreamDuration', route.maxStreamDuration, base.maxStreamDuration),
    streaming: flag('config.deadline.streaming', route.streaming, base.streaming)
  }
}

function headerName (value: unknown): string {
  const name = value ?? DEFAULTS.propagationHeader
  if (typeof name !== 'string' || !/^[a-z0-9!#$%&'*+.^_`|~-]+$/i.test(name)) {
    throw new InvalidDeadlineOptionError('propagationHeader', `expected a valid header name, got ${describeValue(value)}`)
  }
  return name.toLowerCase()
}

function trustFunction (trust: DeadlineOptions['trustIncoming']): DeadlineSettings['trustIncoming'] {
  if (trust === undefined || trust === false) return null
  if (trust === true) return always
  if (typeof trust === 'function') return trust
  throw new InvalidDeadlineOptionError('trustIncoming', `expected a boolean or a function (request) => boolean, got ${describeValue(trust)}`)
}
