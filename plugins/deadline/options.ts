import type { FastifyRequest } from 'fastify'
import { InvalidDeadlineOptionError } from './errors.js'
import type { DeadlineOptions, RouteDeadlineOptions } from './types.js'

/** Everything one route's requests need, resolved once when the route is added. */
export interface DeadlineSettings {
  timeout: number
  streamIdleTimeout: number
  maxStreamDuration: number
  streaming: boolean
  statusCode: number
  trustIncoming: ((request: FastifyRequest) => boolean) | null
  propagationHeader: string
}

const DEFAULTS = {
  timeout: 30_000,
  streamIdleTimeout: 60_000,
  maxStreamDuration: 0,
  statusCode: 504,
  propagationHeader: 'x-request-timeout-ms'
}

const always = (): boolean => true

export function resolvePluginOptions (options: DeadlineOptions): DeadlineSettings {
  const settings: DeadlineSettings = {
    timeout: duration('timeout', options.timeout, DEFAULTS.timeout),
    streamIdleTimeout: duration('streamIdleTimeout', options.streamIdleTimeout, DEFAULTS.streamIdleTimeout),
    maxStreamDuration: duration('maxStreamDuration', options.maxStreamDuration, DEFAULTS.maxStreamDuration),
    streaming: false,
    statusCode: options.statusCode ?? DEFAULTS.statusCode,
    trustIncoming: trustFunction(options.trustIncoming),
    propagationHeader: (options.propagationHeader ?? DEFAULTS.propagationHeader).toLowerCase()
  }
  if (!Number.isInteger(settings.statusCode) || settings.statusCode < 400 || settings.statusCode > 599) {
    throw new InvalidDeadlineOptionError('statusCode', `expected an integer from 400 to 599, got ${String(options.statusCode)}`)
  }
  if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(settings.propagationHeader)) {
    throw new InvalidDeadlineOptionError('propagationHeader', 'expected a valid header name')
  }
  return settings
}

/** Applies a route's `config.deadline` object over the plugin settings. */
export function resolveRouteOptions (base: DeadlineSettings, route: RouteDeadlineOptions | true | undefined): DeadlineSettings {
  if (route === undefined || route === true) return base
  if (typeof route !== 'object' || route === null) {
    throw new InvalidDeadlineOptionError('config.deadline', 'expected false or an object')
  }
  return {
    ...base,
    timeout: duration('config.deadline.timeout', route.timeout, base.timeout),
    streamIdleTimeout: duration('config.deadline.streamIdleTimeout', route.streamIdleTimeout, base.streamIdleTimeout),
    maxStreamDuration: duration('config.deadline.maxStreamDuration', route.maxStreamDuration, base.maxStreamDuration),
    streaming: route.streaming ?? base.streaming
  }
}

function duration (name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidDeadlineOptionError(name, `expected milliseconds (a finite number >= 0), got ${String(value)}`)
  }
  return value
}

function trustFunction (trust: DeadlineOptions['trustIncoming']): DeadlineSettings['trustIncoming'] {
  if (trust === undefined || trust === false) return null
  if (trust === true) return always
  if (typeof trust === 'function') return trust
  throw new InvalidDeadlineOptionError('trustIncoming', 'expected a boolean or a function (request) => boolean')
}
