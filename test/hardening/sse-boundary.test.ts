// The event-boundary tracker the drain relies on, against a plain line-by-line reading of the
// SSE format, with the stream cut into pieces at every position and at pseudo-random ones.
import { test } from 'tap'
import { EventBoundary } from '../../plugins/proxy/upstream/sse-boundary.js'

/** Reference: at a boundary when the last line read is empty (or nothing was read), per the format's line rules. */
function atBoundary (text: string): boolean {
  let lineEmpty = true
  let lastCR = false
  let line = ''
  for (const char of text) {
    if (char === '\n' && lastCR) { lastCR = false; continue }
    lastCR = char === '\r'
    if (char === '\r' || char === '\n') {
      lineEmpty = line === ''
      line = ''
    } else {
      line += char
    }
  }
  return line === '' && lineEmpty
}

/** Reference: the length of `next` up to the end of the event in progress after `before`, CRLF kept whole; -1 if none. */
function eventEnd (before: string, next: string): number {
  for (let k = 1; k <= next.length; k++) {
    if (!atBoundary(before + next.slice(0, k))) continue
    return next[k - 1] === '\r' && next[k] === '\n' ? k + 1 : k
  }
  return -1
}

const STREAMS = [
  'id: 1\ndata: a\n\nid: 2\ndata: b\n\n',
  'data: x\r\n\r\ndata: y\r\ndata: z\r\n\r\n: comment\r\n\r\n',
  'data: cr only\r\rdata: next\r\r\r',
  'retry: 5\n\n\n\ndata: mixed\r\n\ndata: \n\r\n: x\n\rdata:end\n\n',
  '\n\ndata: starts with blank lines\n\n'
]

function follow (pieces: string[]): { ok: boolean, detail: string } {
  const boundary = new EventBoundary()
  let seen = ''
  for (const piece of pieces) {
    const expected = atBoundary(seen) ? null : eventEnd(seen, piece)
    const got = expected === null ? null : boundary.endIn(Buffer.from(piece, 'latin1'))
    if (got !== expected) return { ok: false, detail: `endIn(${JSON.stringify(piece)}) after ${JSON.stringify(seen)}: ${got} instead of ${expected}` }
    boundary.pass(Buffer.from(piece, 'latin1'))
    seen += piece
    if (boundary.atBoundary !== atBoundary(seen)) return { ok: false, detail: `atBoundary after ${JSON.stringify(seen)}: ${boundary.atBoundary}` }
  }
  return { ok: true, detail: '' }
}

test('the boundary is tracked whatever the pieces, across CRLF, LF and CR terminators', async (t) => {
  for (const stream of STREAMS) {
    const failures: string[] = []
    for (let cut = 0; cut <= stream.length; cut++) {
      for (let cut2 = cut; cut2 <= stream.length; cut2++) {
        const { ok, detail } = follow([stream.slice(0, cut), stream.slice(cut, cut2), stream.slice(cut2)])
        if (!ok) failures.push(detail)
      }
    }
    let seed = 7
    const random = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n }
    for (let round = 0; round < 200; round++) {
      const pieces: string[] = []
      for (let at = 0; at < stream.length;) {
        const size = 1 + random(4)
        pieces.push(stream.slice(at, at + size))
        at += size
      }
      const { ok, detail } = follow(pieces)
      if (!ok) failures.push(detail)
    }
    t.same(failures.slice(0, 3), [], `${JSON.stringify(stream)}: every split agrees with the reference`)
  }
})

test('a stream cut mid-event is not at a boundary, and the end of that event is found in the next piece', async (t) => {
  const boundary = new EventBoundary()
  t.ok(boundary.atBoundary, 'nothing relayed yet: a boundary')
  boundary.pass(Buffer.from('data: one\n\ndata: tw'))
  t.notOk(boundary.atBoundary)
  t.equal(boundary.endIn(Buffer.from('o\r')), -1, 'one terminator only')
  boundary.pass(Buffer.from('o\r'))
  t.equal(boundary.endIn(Buffer.from('\n\r\nid: 3')), 3, 'CRLF split over two pieces counts once; the blank line ends it')
})
