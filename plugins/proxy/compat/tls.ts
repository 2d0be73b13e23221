import { InvalidProxyOptionError } from '../errors.js'
import type { ProxyOptions, ProxyTlsOptions } from '../types.js'

/** Node TLS options that @fastify/http-proxy takes elsewhere (`undici.connect`, `wsClientOptions`) and that join our `tls`. */
export const TLS_OPTIONS: ReadonlySet<string> = new Set(['rejectUnauthorized', 'ca', 'servername', 'cert', 'key', 'pfx',
  'passphrase', 'ciphers', 'minVersion', 'maxVersion'])

/** TLS given elsewhere joins `tls`: one setting for HTTP and WebSockets; a conflicting value is refused. */
export function mergeTls (options: ProxyOptions, from: string, given: Record<string, unknown>): void {
  if (Object.keys(given).length === 0) return
  const tls: Record<string, unknown> = { ...options.tls }
  for (const [key, setting] of Object.entries(given)) {
    if (tls[key] !== undefined && tls[key] !== setting) throw new InvalidProxyOptionError(`${from}.${key}`, `conflicts with tls.${key}: give one`)
    tls[key] = setting
  }
  options.tls = tls as ProxyTlsOptions
}
