// Type test, checked by `tsc --noEmit` in `npm test` (not run by tap): each of `channels` hands its
// subscriber its own message type under `strict`, without a cast, from the package's root.
import {
  channels, CHANNELS, type ClientDisconnectedMessage, type DeadlineExpiredMessage, type ProxyResponseMessage, type StreamEndCause,
  type StreamEndMessage, type TunnelClosedMessage, type TunnelOpenedMessage, type TypedChannel, type UpstreamErrorMessage
} from '../../index.js'
import type { FastifyReply, FastifyRequest } from 'fastify'

function expectType<T> (value: T): T { return value }

// The README's Prometheus recipe, as written there.
channels.streamEnd.subscribe(({ endedBy, bytes, durationMs }) => {
  expectType<StreamEndCause>(endedBy)
  expectType<number>(bytes)
  expectType<number>(durationMs)
})
channels.deadlineExpired.subscribe(({ request, reply, route, phase, elapsed, outcome }) => {
  expectType<FastifyRequest>(request)
  expectType<FastifyReply>(reply)
  expectType<string>(route)
  expectType<'response' | 'idle' | 'lifetime'>(phase)
  expectType<number>(elapsed)
  expectType<'504' | 'clean-end' | 'cut'>(outcome)
})
channels.clientDisconnected.subscribe((message) => expectType<ClientDisconnectedMessage>(message))
channels.upstreamError.subscribe(({ error, code, statusCode }) => { expectType<Error>(error); expectType<string>(code); expectType<number>(statusCode) })
channels.proxyResponse.subscribe((message) => expectType<ProxyResponseMessage>(message))
channels.streamResumed.subscribe((message) => {
  expectType<number>(message.attempt + message.gapMs)
  expectType<string>(message.upstream)
  // `kind` tells an event stream's id from a download's offset.
  if (message.kind === 'event-stream') expectType<string>(message.lastEventId)
  else expectType<number>(message.offset)
})
channels.streamEnd.subscribe(({ resumes }) => expectType<number>(resumes))
channels.tunnelOpened.subscribe(({ protocol }) => expectType<string>(protocol))
channels.tunnelClosed.subscribe(({ closedBy, bytesIn, bytesOut }) => {
  expectType<'client' | 'upstream' | 'idle' | 'lifetime' | 'shutdown'>(closedBy)
  expectType<number>(bytesIn + bytesOut)
})

// unsubscribe takes the same function back and says whether it was subscribed.
const onEnd = (message: StreamEndMessage): void => { expectType<StreamEndCause>(message.endedBy) }
channels.streamEnd.subscribe(onEnd)
expectType<boolean>(channels.streamEnd.unsubscribe(onEnd))
expectType<TypedChannel<DeadlineExpiredMessage>>(channels.deadlineExpired)
expectType<TypedChannel<UpstreamErrorMessage>>(channels.upstreamError)
expectType<TypedChannel<TunnelOpenedMessage>>(channels.tunnelOpened)
expectType<TypedChannel<TunnelClosedMessage>>(channels.tunnelClosed)
expectType<string>(channels.streamEnd.name)
expectType<'fastify-streamline:stream:end'>(CHANNELS.streamEnd)

// @ts-expect-error a stream end has no `closedBy` (a tunnel's close has)
channels.streamEnd.subscribe(({ closedBy }) => closedBy)
// @ts-expect-error endedBy is one of the causes, not any string
channels.streamEnd.subscribe(({ endedBy }) => expectType<'timeout'>(endedBy))
// @ts-expect-error a subscriber of one channel's messages is not one of another's
channels.tunnelClosed.subscribe(onEnd)
