import { InvalidProxyOptionError } from './errors.js'
import type { HealthCheckOptions, OutlierDetectionOptions, ProxyOptions, ReplicaOption, ResolveOption } from './types.js'
import type { PoolSettings } from './upstream/pool.js'
import type { ReplicaSpec } from './upstream/replica.js'
import type { ResolveSettings } from './upstream/resolve.js'
import { describeUrl, describeValue, optionChecks } from '../../lib/option-checks.js'

// The options that make a registration's upstream a pool of replicas, checked at registration:
// `upstream` as a list, or `resolve`. The pool's name is its first URL (or `upstream` beside a
// `resolve` function): reply-from is given that URL, and each attempt is aimed at a replica.

export const POOL_OPTIONS = ['resolve', 'balance', 'outlierDetection', 'healthCheck', 'retryBodyLimit', 'retryNonIdempotent']

const { flag, integer, knownKeys, optionalObject } = optionChecks(InvalidProxyOptionError)
const BALANCE = new Set(['least-request', 'round-robin', 'random'])
const OUTLIER_KEYS = new Set(['consecutiveFailures', 'baseEjection', 'maxEjection', 'maxEjectionPercent'])
const HEALTH_KEYS = new Set(['path', 'interval', 'timeout', 'healthyThreshold', 'unhealthyThreshold'])
const RESOLVE_KEYS = new Set(['dns', 'replicas', 'interval'])
/** The pool's name when only a `resolve` function gives the replicas. */
const UNNAMED_POOL = 'http://upstream-pool'

/** The registration's upstream URL for reply-from and its pool, or null for one upstream. */
export function resolvePool (options: ProxyOptions): { upstream: ProxyOptions['upstream'], pool: PoolSettings | null, retries: number } {
  const given = options.upstream
  const retries = integer('retries', options.retries, null, 0)
  if (!Array.isArray(given) && options.resolve === undefined) {
    const stray = POOL_OPTIONS.find(name => (options as Record<string, unknown>)[name] !== undefined)
    if (stray !== undefined) throw new InvalidProxyOptionError(stray, 'applies to a pool: give `upstream` as a list of replicas, or `resolve`')
    return { upstream: given, pool: null, retries: retries ?? 0 }
  }
  if (typeof given === 'function') throw new InvalidProxyOptionError('upstream', 'a function cannot be a pool: give a list of replicas, or `resolve`')
  const resolve = resolveSettings(options.resolve)
  const replicas = replicaList(given, resolve)
  const name = replicas[0]?.url ?? UNNAMED_POOL
  const base = new URL(name)
  const pool: PoolSettings = {
    name: base.host,
    replicas,
    protocol: base.protocol,
    resolve,
    balance: balance(options.balance),
    outlier: outlier(options.outlierDetection),
    healthCheck: healthCheck(options.healthCheck),
    failover: {
      retries: retries ?? 2,
      bodyLimit: integer('retryBodyLimit', options.retryBodyLimit, 64 * 1024, 0),
      nonIdempotent: flag('retryNonIdempotent', options.retryNonIdempotent, false)
    }
  }
  return { upstream: name, pool, retries: retries ?? 2 }
}

/** The replicas given: http(s) URLs of one scheme and one base path. */
function replicaList (given: ProxyOptions['upstream'], resolve: ResolveSettings | null): ReplicaSpec[] {
  const list: ReplicaOption[] = given === undefined ? [] : Array.isArray(given) ? given : [given as string]
  if (list.length === 0 && resolve?.replicas == null) throw new InvalidProxyOptionError('upstream', 'a pool needs at least one replica URL (or a `resolve` function)')
  const specs = list.map((entry, i) => replica(`upstream[${i}]`, entry))
  const first = specs[0] === undefined ? null : new URL(specs[0].url)
  for (const [i, spec] of specs.entries()) {
    const url = new URL(spec.url)
    if (first !== null && (url.protocol !== first.protocol || url.pathname !== first.pathname)) {
      throw new InvalidProxyOptionError(`upstream[${i}]`, `expected the scheme and path of upstream[0] (one pool, one base path), got ${describeUrl(spec.url)}`)
    }
  }
  return specs
}

function replica (name: string, entry: ReplicaOption): ReplicaSpec {
  const { url, weight } = typeof entry === 'string' ? { url: entry, weight: 1 } : (optionalObject(name, entry) ?? { url: undefined, weight: 1 })
  let parsed: URL | null = null
  try { parsed = typeof url === 'string' && /^https?:\/\//i.test(url) ? new URL(url) : null } catch {}
  if (parsed === null || parsed.search !== '' || parsed.hash !== '' || parsed.username !== '' || parsed.password !== '') {
    throw new InvalidProxyOptionError(name, `expected an absolute http(s) URL without query, fragment or credentials, got ${describeUrl(url)}`)
  }
  return { url: url as string, weight: integer(`${name}.weight`, weight, 1, 1) }
}

function resolveSettings (value: ResolveOption | undefined): ResolveSettings | null {
  if (value === undefined) return null
  if (typeof value === 'function') return { dns: false, replicas: value, interval: 10_000 }
  knownKeys('resolve.', optionalObject('resolve', value) ?? {}, RESOLVE_KEYS)
  const given = value as { dns?: unknown, replicas?: unknown, interval?: unknown }
  const dns = flag('resolve.dns', given.dns, false)
  const replicas = given.replicas === undefined ? null : given.replicas
  if (replicas !== null && typeof replicas !== 'function') throw new InvalidProxyOptionError('resolve.replicas', `expected a function, got ${describeValue(replicas)}`)
  if (dns === (replicas !== null)) throw new InvalidProxyOptionError('resolve', 'give one of `dns: true` or `replicas: async () => urls`')
  return { dns, replicas: replicas as ResolveSettings['replicas'], interval: integer('resolve.interval', given.interval, 10_000, 1) }
}

function balance (value: ProxyOptions['balance']): PoolSettings['balance'] {
  if (value === undefined) return 'least-request'
  if (typeof value === 'string' && BALANCE.has(value)) return value
  if (typeof value === 'object' && value !== null && typeof (value as { hash?: unknown }).hash === 'function') return value
  throw new InvalidProxyOptionError('balance', `expected 'least-request', 'round-robin', 'random' or { hash: (request) => key }, got ${describeValue(value)}`)
}

function outlier (value: OutlierDetectionOptions | false | undefined): PoolSettings['outlier'] {
  if (value === false) return null
  const given = optionalObject('outlierDetection', value) ?? {}
  knownKeys('outlierDetection.', given, OUTLIER_KEYS)
  const percent = integer('outlierDetection.maxEjectionPercent', given.maxEjectionPercent, 50, 0)
  if (percent > 100) throw new InvalidProxyOptionError('outlierDetection.maxEjectionPercent', `expected a percentage (0 to 100), got ${percent}`)
  return {
    consecutiveFailures: integer('outlierDetection.consecutiveFailures', given.consecutiveFailures, 5, 1),
    baseEjection: integer('outlierDetection.baseEjection', given.baseEjection, 30_000, 1),
    maxEjection: integer('outlierDetection.maxEjection', given.maxEjection, 300_000, 1),
    maxEjectionPercent: percent
  }
}

function healthCheck (value: HealthCheckOptions | undefined): PoolSettings['healthCheck'] {
  if (value === undefined) return null
  const given = optionalObject('healthCheck', value) as HealthCheckOptions
  knownKeys('healthCheck.', given, HEALTH_KEYS)
  if (typeof given.path !== 'string' || given.path[0] !== '/') throw new InvalidProxyOptionError('healthCheck.path', `expected a path starting with /, got ${describeValue(given.path)}`)
  return {
    path: given.path,
    interval: integer('healthCheck.interval', given.interval, 10_000, 1),
    timeout: integer('healthCheck.timeout', given.timeout, 2000, 1),
    healthyThreshold: integer('healthCheck.healthyThreshold', given.healthyThreshold, 2, 1),
    unhealthyThreshold: integer('healthCheck.unhealthyThreshold', given.unhealthyThreshold, 2, 1)
  }
}
