import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ProxySettings } from './options.js'
import { compileTarget, mapUrl, upstreamUrl, type ProxyTarget } from './target.js'
import { wsRequestHeaders, wsTarget } from './compat/ws-client-options.js'
import { webSocketUpgrade, type UpgradeHooks } from './websocket/index.js'
import type { UpstreamPool } from './upstream/pool.js'

/**
 * The pass-through as a proxy registration configures it: upgrades go to `wsUpstream` (or
 * `upstream`) through the same path mapping and safety checks as plain HTTP. When `upstream`
 * is a pool (and no `wsUpstream` is given), each handshake goes to one of its replicas.
 */
export function proxyUpgrade (instance: FastifyInstance, settings: ProxySettings, pool: UpstreamPool | null): UpgradeHooks {
  const target = compileTarget({
    upstream: settings.wsUpstream ?? settings.upstream,
    prefix: instance.prefix,
    rewritePrefix: settings.rewritePrefix
  })
  return webSocketUpgrade(instance, {
    // preRewrite and wsClientOptions (@fastify/http-proxy): as for plain requests, then the query string.
    target: wsTarget(preRewritten(settings, instance.prefix, target), settings.compat.wsClient),
    // A tunnel's close handshake never outlasts the drain of the server's other connections.
    timings: { ...settings.wsTimings, closeGrace: Math.min(settings.wsTimings.closeGrace, settings.drainTimeout) },
    tls: settings.tls,
    rewriteRequestHeaders: wsRequestHeaders(settings.rewriteRequestHeaders, settings.compat.wsClient),
    rewriteHeaders: settings.rewriteHeaders,
    pool: settings.wsUpstream === undefined ? pool : null
  })
}

/** The handshake's upstream URL, through `preRewrite` when there is one (its result is checked like a request's). */
function preRewritten (settings: ProxySettings, prefix: string, target: ProxyTarget): (request: FastifyRequest) => URL {
  const preRewrite = settings.compat.preRewrite
  if (preRewrite === null) return request => upstreamUrl(request, target)
  return request => mapUrl(preRewrite(request.url, request.params, prefix), request, target, 'confined')
}
