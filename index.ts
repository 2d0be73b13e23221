export { default as deadline } from './plugins/deadline/index.js'
export * from './plugins/deadline/index.js'
export { default as proxy } from './plugins/proxy/index.js'
export type {
  ProxyOptions, ProxyTlsOptions, ProxyReplyOptions, UpstreamOption, UpstreamRequestHeaders,
  ReplicaOption, ResolveOption, BalanceOption, OutlierDetectionOptions, HealthCheckOptions, SseResumeOptions
} from './plugins/proxy/index.js'
export { CHANNELS, channels } from './lib/diagnostics.js'
export type {
  DeadlineExpiredMessage, ClientDisconnectedMessage, UpstreamErrorMessage, ProxyResponseMessage,
  StreamEndMessage, StreamEndCause, TunnelOpenedMessage, TunnelClosedMessage, TypedChannel,
  UpstreamEjectedMessage, UpstreamRestoredMessage, UpstreamHealthMessage, UpstreamSetMessage, StreamResumedMessage, ResumedFrom
} from './lib/diagnostics.js'
