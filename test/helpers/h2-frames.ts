// A hand-driven HTTP/2 connection, for what a well-behaved client never sends (frames that
// ignore the server's SETTINGS, floods): frames written as bytes, frames received recorded.
import { once } from 'node:events'
import net from 'node:net'
import type { Test } from 'tap'
import { within } from './bounded.js'

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')
export const SETTINGS = 0x4
export const HEADERS = 0x1
export const RST_STREAM = 0x3
export const GOAWAY = 0x7

export function frame (type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(streamId, 5)
  return Buffer.concat([head, payload])
}

/** An HPACK "literal header field without indexing, new name" (RFC 7541 6.2.2), no Huffman; short strings only. */
export function literal (name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)])
}

export interface RawFrame { type: number, flags: number, streamId: number, payload: Buffer }

/** A hand-driven h2c connection: sends the preface, acknowledges the server's SETTINGS, records every frame. */
export async function rawH2 (t: Test, port: number): Promise<{ socket: net.Socket, frames: RawFrame[], until: (match: (f: RawFrame) => boolean) => Promise<RawFrame> }> {
  const socket = net.connect({ port, host: '127.0.0.1' })
  socket.on('error', () => {})
  t.teardown(() => { socket.destroy() })
  await within(10_000, once(socket, 'connect'), 'the h2c connection')
  socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0))]))
  const frames: RawFrame[] = []
  const waiters: Array<() => void> = []
  let buffered = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    while (buffered.length >= 9 && buffered.length >= 9 + buffered.readUIntBE(0, 3)) {
      const length = buffered.readUIntBE(0, 3)
      const f = { type: buffered[3], flags: buffered[4], streamId: buffered.readUInt32BE(5) & 0x7fffffff, payload: buffered.subarray(9, 9 + length) }
      buffered = buffered.subarray(9 + length)
      frames.push(f)
      if (f.type === SETTINGS && (f.flags & 0x1) === 0) socket.write(frame(SETTINGS, 0x1, 0, Buffer.alloc(0)))
    }
    for (const wake of waiters.splice(0)) wake()
  })
  const find = async (match: (f: RawFrame) => boolean): Promise<RawFrame> => {
    for (;;) {
      const found = frames.find(match)
      if (found !== undefined) return found
      if (socket.destroyed || socket.readableEnded) throw new Error(`connection ended; frames: ${frames.map(f => f.type).join(',')}`)
      await new Promise<void>(resolve => {
        waiters.push(resolve)
        socket.once('close', resolve)
      })
    }
  }
  const until = async (match: (f: RawFrame) => boolean): Promise<RawFrame> =>
    await within(10_000, find(match), () => `the awaited frame (frame types so far: ${frames.map(f => f.type).join(',')})`)
  await until(f => f.type === SETTINGS && (f.flags & 0x1) === 0)
  return { socket, frames, until }
}
