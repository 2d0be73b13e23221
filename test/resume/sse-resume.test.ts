// `sseResume`: an event stream its upstream cuts goes on in the same client response, from a
// new upstream request carrying `Last-Event-ID`. The upstream is a raw socket, so that each cut
// is exactly the one named (a reset mid-event, a FIN without the chunked terminator, a clean end).
import t, { type Test } from 'tap'
import type { ProxyOptions } from '../../plugins/proxy/index.js'
import type { DeadlineOptions } from '../../plugins/deadline/index.js'
import type { StreamEndMessage, StreamResumedMessage } from '../../lib/diagnostics.js'
import { proxyApp } from '../helpers/proxy-servers.js'
import { Stream } from '../helpers/stream-client.js'
import { PROMPTLY, within } from '../helpers/bounded.js'
import { subscribe } from '../helpers/channels.js'
import { MAX_HELD } from '../../plugins/proxy/upstream/event-ids.js'
import { chunk, lastEventIds, LAST_CHUNK, SSE_HEAD, sseUpstream, type SseUpstream } from '../helpers/sse-upstream.js'

const E1 = 'id: 1\ndata: one\n\n'
const E2 = 'id: 2\ndata: two\n\n'
const E3 = 'id: 3\ndata: three\n\n'

async function setup (t: Test, extra: Partial<ProxyOptions> = {}, deadline?: DeadlineOptions): Promise<{ up: SseUpstream, url: string }> {
  const up = await sseUpstream(t)
  const { url } = await proxyApp(t, { upstream: up.url, sseResume: {}, ...extra }, { deadline })
  return { up, url }
}

/** The client's stream, with bounded waits that name what is missing and show what it has. */
async function arrives (stream: Stream, text: string): Promise<void> {
  await within(PROMPTLY, stream.until(body => body.includes(text)), () => `the client received ${JSON.stringify(text)}; it has ${JSON.stringify(stream.body)}`)
}

/** A client's stream whose upstream sent `sent` and was reset once the client had `seen`. */
async function resetAfter (up: SseUpstream, url: string, sent: string, seen: string): Promise<Stream> {
  const client = new Stream(`${url}/feed`)
  const first = await up.next('the first request')
  first.socket.write(SSE_HEAD, 'latin1')
  chunk(first.socket, sent)
  await arrives(client, seen)
  first.socket.resetAndDestroy()
  return client
}

async function ended (stream: Stream): Promise<'end' | 'cut'> {
  return await within(PROMPTLY, stream.done, () => `the client's stream ended; it has ${JSON.stringify(stream.body)}`)
}

t.test('a reset in the middle of an event: the client never sees the partial event, then gets it whole from the resumed stream', async (t) => {
  const resumed = subscribe<StreamResumedMessage>(t, 'fastify-streamline:stream:resumed')
  const ends = subscribe<StreamEndMessage>(t, 'fastify-streamline:stream:end')
  const { up, url } = await setup(t)
  const client = new Stream(`${url}/feed`, { headers: { 'last-event-id': 'client-own' } })
  const first = await up.next('the first request')
  first.socket.write(SSE_HEAD, 'latin1')
  chunk(first.socket, E1)
  await arrives(client, E1)
  chunk(first.socket, 'id: 2\ndata: tw')
  first.socket.resetAndDestroy()
  const second = await up.next('the resume request')
  t.equal(client.body, E1, 'nothing of the partial event reached the client')
  t.same(lastEventIds(first.head), ['client-own'], 'the first request carried the client\'s own Last-Event-ID')
  t.same(lastEventIds(second.head), ['1'], 'the resume request carries the last relayed id, replacing the client\'s')
  t.match(second.head, /^GET \/feed HTTP\/1\.1\r\n/, 'the same method and path')
  second.socket.write(SSE_HEAD, 'latin1')
  chunk(second.socket, E2 + E3)
  second.socket.end(LAST_CHUNK)
  t.equal(await ended(client), 'end', 'the client\'s stream ends cleanly with the resumed one')
  t.equal(client.body, E1 + E2 + E3, 'every event once, in order, whole')
  await resumed.waitFor(1)
  t.match(resumed.messages[0], { kind: 'event-stream', attempt: 1, lastEventId: '1', upstream: up.url })
  t.ok(resumed.messages[0].gapMs >= 0)
  await ends.waitFor(1)
  t.equal(ends.messages[0].resumes, 1, 'stream:end counts the resume')
  t.equal(up.seen.length, 2)
})

t.test('a FIN without the chunked terminator is resumed', async (t) => {
  const { up, url } = await setup(t)
  const client = new Stream(`${url}/feed`)
  const first = await up.next('the first request')
  first.socket.write(SSE_HEAD, 'latin1')
  chunk(first.socket, E1 + E2 + 'id: 3\nda')
  await arrives(client, E2)
  first.socket.end()
  const second = await up.next('the resume request')
  t.same(lastEventIds(second.head), ['2'])
  t.equal(client.body, E1 + E2, 'no partial event')
  second.socket.write(SSE_HEAD, 'latin1')
  chunk(second.socket, E3)
  second.socket.end(LAST_CHUNK)
  t.equal(await ended(client), 'end')
  t.equal(client.body, E1 + E2 + E3)
})

t.test('a clean end is the end, without resumeOn any-end', async (t) => {
  const { up, url } = await setup(t)
  const client = new Stream(`${url}/feed`)
  const first = await up.next('the first request')
  first.socket.write(SSE_HEAD, 'latin1')
  chunk(first.socket, E1)
  first.socket.end(LAST_CHUNK)
  t.equal(await ended(client), 'end')
  t.equal(client.body, E1)
  t.equal(up.seen.length, 1, 'no resume request')
})

t.test('with resumeOn any-end, a clean end is resumed too', async (t) => {
  const { up, url } = await setup(t, { sseResume: { resumeOn: 'any-end' } })
  const client = new Stream(`${url}/feed`)
  const first = await up.next('the first request')
  first.socket.write(SSE_HEAD, 'latin1')
  chunk(first.socket, E1 + 'retry: 100\n\n')
  first.socket.end(LAST_CHUNK)
  const second = await up.next('the resume request')
  t.same(lastEventIds(second.head), ['1'], 'an event without id keeps the last one')
  second.socket.write(SSE_HEAD, 'latin1')
  chunk(second.socket, E2)
  await arrives(client, E2)
  client.emit('stop')
  t.equal(client.body, E1 + 'retry: 100\n\n' + E2)
})

t.test('an upstream that ignores Last-Event-ID and replays from the start: no duplicates', async (t) => {
  const { up, url } = await setup(t)
  const client = await resetAfter(up, url, E1 + E2, E2)
  const second = await up.next('the resume request')
  t.same(lastEventIds(second.head), ['2'])
  second.socket.write(SSE_HEAD, 'latin1')
  chunk(second.socket, E1 + E2 + E3)
  second.socket.end(LAST_CHUNK)
  t.equal(await ended(client), 'end')
  t.equal(client.body, E1 + E2 + E3, 'the replayed events were dropped')
})

for (const [name, answer] of [
  ['404', 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'],
  ['500', 'HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\nconnection: close\r\n\r\noops!'],
  ['JSON', 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}']
]) {
  t.test(`a resume answered with ${name}: a clean end at an event boundary`, async (t) => {
    const { up, url } = await setup(t)
    const client = new Stream(`${url}/feed`)
    const first = await up.next('the first request')
    first.socket.write(SSE_HEAD, 'latin1')
    chunk(first.socket, E1 + 'id: 2\ndata: half')
    await arrives(client, E1)
    first.socket.resetAndDestroy()
    const second = await up.next('the resume request')
    t.same(lastEventIds(second.head), ['1'])
    second.socket.end(answer, 'latin1')
    t.equal(await ended(client), 'end', 'a clean end')
    t.equal(client.body, E1, 'at the event boundary, nothing of the answer relayed')
    t.equal(up.seen.length, 2, 'no further attempt')
  })
}

t.test('no id relayed yet: no resume, the stream is cut as without sseResume', async (t) => {
  const { up, url } = await setup(t)
  const client = await resetAfter(up, url, 'data: no id\n\ndata: half', 'data: no id\n\n')
  t.equal(await ended(client), 'cut')
  t.equal(client.body, 'data: no id\n\n', 'no partial event')
  t.equal(up.seen.length, 1, 'no resume request')
})

t.test('an empty id resets the last id: no resume', async (t) => {
  const { up, url } = await setup(t)
  const client = await resetAfter(up, url, E1 + 'id\ndata: reset\n\n', 'reset')
  t.equal(await ended(client), 'cut')
  t.equal(up.seen.length, 1, 'no resume request')
})

t.test('an id with NUL is ignored: the previous id is resumed from', async (t) => {
  const { up, url } = await setup(t)
  const client = await resetAfter(up, url, E1 + 'id: a\0b\ndata: nul\n\n', 'nul')
  const second = await up.next('the resume request')
  t.same(lastEventIds(second.head), ['1'])
  second.socket.end(SSE_HEAD + LAST_CHUNK, 'latin1')
  t.equal(await ended(client), 'end')
})

/** A client's stream whose upstream sent event 1, then most of an event larger than MAX_HELD (id 2), which the client has. */
async function bigEventUnderWay (up: SseUpstream, url: string): Promise<{ client: Stream, first: Awaited<ReturnType<SseUpstream['next']>>, big: string }> {
  const client = new Stream(`${url}/feed`)
  const first = await up.next('the first request')
  first.socket.write(SSE_HEAD, 'latin1')
  const big = 'id: 2\ndata: ' + 'x'.repeat(MAX_HELD + 1024)
  chunk(first.socket, E1 + big)
  await arrives(client, big)
  return { client, first, big }
}

t.test('an event larger than what is held goes out as it comes; a cut inside it is a cut, not a resume', async (t) => {
  const { up, url } = await setup(t)
  const { client, first, big } = await bigEventUnderWay(up, url)
  first.socket.resetAndDestroy()
  t.equal(await ended(client), 'cut', 'the client sees the cut')
  t.equal(client.body, E1 + big, 'the part of the event relayed before the cut')
  t.equal(up.seen.length, 1, 'no resume request')
})

t.test('after a large event ends, the stream is resumable again', async (t) => {
  const { up, url } = await setup(t)
  const { client, first, big } = await bigEventUnderWay(up, url)
  chunk(first.socket, '\n\n' + E3 + 'id: 4\ndata: ha')
  await arrives(client, E3)
  first.socket.resetAndDestroy()
  const second = await up.next('the resume request')
  t.same(lastEventIds(second.head), ['3'])
  second.socket.end(SSE_HEAD + LAST_CHUNK, 'latin1')
  t.equal(await ended(client), 'end')
  t.equal(client.body, E1 + big + '\n\n' + E3)
})

t.test('a stream older than the deadline\'s timeout is still resumed, and the resume request carries what is left of its lifetime', async (t) => {
  const { up, url } = await setup(t, {}, { timeout: 300, maxStreamDuration: 20_000 })
  const client = new Stream(`${url}/feed`)
  const first = await up.next('the first request')
  first.socket.write(SSE_HEAD, 'latin1')
  chunk(first.socket, E1)
  await arrives(client, E1)
  // Past the head's 300 ms timeout: only the lifetime bounds the stream now.
  await new Promise(resolve => setTimeout(resolve, 600))
  first.socket.resetAndDestroy()
  const second = await up.next('the resume request, after the head deadline passed')
  const budget = Number(/\r\nx-request-timeout-ms: (\d+)\r\n/i.exec(second.head)?.[1])
  t.ok(budget > 15_000 && budget <= 19_450, `the budget sent is the lifetime left (${budget} ms), not the spent head deadline`)
  second.socket.write(SSE_HEAD, 'latin1')
  chunk(second.socket, E2)
  second.socket.end(LAST_CHUNK)
  t.equal(await ended(client), 'end')
  t.equal(client.body, E1 + E2)
})
