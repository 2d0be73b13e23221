// Prometheus metrics for the example ingress, fed only from fastify-streamline's diagnostics
// channels (the README's recipe, plus gauges for tunnels). `/metrics` serves them as text; the
// page's panel reads the same text.
import diagnostics from 'node:diagnostics_channel'
import client from 'prom-client'
import { CHANNELS } from 'fastify-streamline'

export async function metricsRoutes (app) {
  const registry = new client.Registry()
  const metrics = createMetrics(registry)
  const subscriptions = subscribe(metrics)
  app.addHook('onClose', async () => { for (const [name, fn] of subscriptions) diagnostics.unsubscribe(name, fn) })
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

/** The subscriptions, as [channel, listener] pairs so that onClose can remove them. */
function subscribe (m) {
  const subscriptions = [
    [CHANNELS.deadlineExpired, ({ phase, outcome }) => m.expired.inc({ phase, outcome })],
    [CHANNELS.clientDisconnected, ({ phase }) => m.disconnected.inc({ phase })],
    [CHANNELS.upstreamError, ({ code }) => m.upstreamErrors.inc({ code })],
    [CHANNELS.proxyResponse, ({ upstreamHeadersMs }) => { m.upstreamHead.observe(upstreamHeadersMs / 1000); m.openStreams.inc() }],
    [CHANNELS.streamEnd, ({ durationMs, endedBy }) => { m.streams.observe({ ended_by: endedBy }, durationMs / 1000); m.openStreams.dec() }],
    [CHANNELS.tunnelOpened, () => m.openTunnels.inc()],
    [CHANNELS.tunnelClosed, ({ durationMs, closedBy }) => { m.tunnels.observe({ closed_by: closedBy }, durationMs / 1000); m.openTunnels.dec() }]
  ]
  for (const [name, fn] of subscriptions) diagnostics.subscribe(name, fn)
  return subscriptions
}
