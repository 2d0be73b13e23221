// Prometheus metrics for the example ingress, fed only from fastify-streamline's diagnostics
// channels (the README's recipe, plus gauges for tunnels). `/metrics` serves them as text; the
// page's panel reads the same text. Subscribed through `channels`, whose subscribers are guarded:
// one that throws (a label prom-client refuses, say) is logged on its request instead of ending
// the process, as a bare diagnostics_channel subscriber would.
import client from 'prom-client'
import { channels } from 'fastify-streamline'

/**
 * `replicaNames`: [origin, name] pairs of the live pool's replicas. The per-replica series are
 * labelled with the name the demo gave each replica; a replica the example does not name (found
 * by UPSTREAM_DNS) is labelled with its address.
 */
export async function metricsRoutes (app, { replicaNames = [] } = {}) {
  const registry = new client.Registry()
  const metrics = createMetrics(registry)
  const names = new Map(replicaNames)
  const subscriptions = [...subscribe(metrics), ...subscribeReplicas(replicaMetrics(registry, names), names)]
  app.addHook('onClose', async () => { for (const [channel, fn] of subscriptions) channel.unsubscribe(fn) })
  app.get('/metrics', { config: { deadline: false } }, async (request, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()))
}

function createMetrics (registry) {
  const registers = [registry]
  return {
    expired: new client.Counter({ name: 'ingress_deadline_expired_total', help: 'Deadline expiries, by phase and what the client saw', labelNames: ['phase', 'outcome'], registers }),
    disconnected: new client.Counter({ name: 'ingress_client_disconnects_total', help: 'Clients that left before their response was complete', labelNames: ['phase'], registers }),
    upstreamErrors: new client.Counter({ name: 'ingress_upstream_errors_total', help: 'Failed upstream calls, by the code the client got', labelNames: ['code'], registers }),
    openStreams: new client.Gauge({ name: 'ingress_open_streams', help: 'Proxied response bodies in flight', registers }),
    openTunnels: new client.Gauge({ name: 'ingress_open_tunnels', help: 'WebSocket tunnels open', registers }),
    upstreamHead: new client.Histogram({ name: 'ingress_upstream_head_seconds', help: 'Time from sending a request upstream to its response head', buckets: [0.005, 0.025, 0.1, 0.5, 2, 10], registers }),
    streams: new client.Histogram({ name: 'ingress_stream_seconds', help: 'Proxied body durations, by what ended them', labelNames: ['ended_by'], buckets: [0.1, 1, 10, 60, 600], registers }),
    tunnels: new client.Histogram({ name: 'ingress_tunnel_seconds', help: 'WebSocket tunnel durations, by who closed them', labelNames: ['closed_by'], buckets: [1, 10, 60, 600, 3600], registers })
  }
}

function replicaMetrics (registry, names) {
  const registers = [registry]
  const labelNames = ['replica']
  const m = {
    requests: new client.Counter({ name: 'ingress_replica_responses_total', help: 'Responses from each upstream replica', labelNames, registers }),
    inFlight: new client.Gauge({ name: 'ingress_replica_in_flight', help: 'Responses from each replica still being sent to the client', labelNames, registers }),
    ejections: new client.Counter({ name: 'ingress_replica_ejections_total', help: 'Times passive health ejected each replica', labelNames, registers }),
    ejected: new client.Gauge({ name: 'ingress_replica_ejected', help: '1 while the replica is ejected', labelNames, registers }),
    healthy: new client.Gauge({ name: 'ingress_replica_healthy', help: '0 while the active health check fails the replica', labelNames, registers })
  }
  // Every named replica appears from the start, at zero and healthy.
  for (const replica of names.values()) {
    m.requests.inc({ replica }, 0)
    m.inFlight.set({ replica }, 0)
    m.ejections.inc({ replica }, 0)
    m.ejected.set({ replica }, 0)
    m.healthy.set({ replica }, 1)
  }
  return m
}

/** The pool's channels. proxy:response and stream:end carry every upstream's origin: only pool members count. */
function subscribeReplicas (m, names) {
  const label = (upstream) => ({ replica: names.get(upstream) ?? upstream })
  const member = (upstream) => names.size === 0 || names.has(upstream)
  const subscriptions = [
    [channels.proxyResponse, ({ upstream }) => { if (member(upstream)) { m.requests.inc(label(upstream)); m.inFlight.inc(label(upstream)) } }],
    [channels.streamEnd, ({ upstream }) => { if (member(upstream)) m.inFlight.dec(label(upstream)) }],
    [channels.upstreamEjected, ({ upstream }) => { m.ejections.inc(label(upstream)); m.ejected.set(label(upstream), 1) }],
    [channels.upstreamRestored, ({ upstream }) => m.ejected.set(label(upstream), 0)],
    [channels.upstreamHealth, ({ upstream, healthy }) => m.healthy.set(label(upstream), healthy ? 1 : 0)]
  ]
  for (const [channel, fn] of subscriptions) channel.subscribe(fn)
  return subscriptions
}

/** The subscriptions, as [channel, listener] pairs so that onClose can remove them. */
function subscribe (m) {
  const subscriptions = [
    [channels.deadlineExpired, ({ phase, outcome }) => m.expired.inc({ phase, outcome })],
    [channels.clientDisconnected, ({ phase }) => m.disconnected.inc({ phase })],
    [channels.upstreamError, ({ code }) => m.upstreamErrors.inc({ code })],
    [channels.proxyResponse, ({ upstreamHeadersMs }) => { m.upstreamHead.observe(upstreamHeadersMs / 1000); m.openStreams.inc() }],
    [channels.streamEnd, ({ durationMs, endedBy }) => { m.streams.observe({ ended_by: endedBy }, durationMs / 1000); m.openStreams.dec() }],
    [channels.tunnelOpened, () => m.openTunnels.inc()],
    [channels.tunnelClosed, ({ durationMs, closedBy }) => { m.tunnels.observe({ closed_by: closedBy }, durationMs / 1000); m.openTunnels.dec() }]
  ]
  for (const [channel, fn] of subscriptions) channel.subscribe(fn)
  return subscriptions
}
