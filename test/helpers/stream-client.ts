import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { EventEmitter, once } from 'node:events'

/** A streaming GET on its own connection: the body so far, an event per chunk, and how it ended. */
export class Stream extends EventEmitter {
  body = ''
  status = 0
  ending: 'end' | 'cut' | null = null
  endedAt = 0
  readonly done: Promise<'end' | 'cut'>

  /** `options`: e.g. `{ ca }` for an https: URL. */
  constructor (url: string, options: https.RequestOptions = {}) {
    super()
    this.done = new Promise((resolve, reject) => {
      const get = url.startsWith('https:') ? https.get : http.get
      const req = get(url, { agent: false, ...options }, (res) => {
        this.status = res.statusCode ?? 0
        res.setEncoding('latin1')
        res.on('data', (data: string) => { this.body += data; this.emit('data') })
        res.on('end', () => { this.ending = 'end' })
        res.on('error', () => {})
        res.on('close', () => {
          this.ending ??= 'cut'
          this.endedAt = Date.now()
          resolve(this.ending)
        })
      })
      req.on('error', reject)
    })
  }

  /** Resolves once the body so far satisfies `check`. */
  async until (check: (body: string) => boolean): Promise<void> {
    while (!check(this.body)) {
      if (this.ending !== null) throw new Error(`stream ended (${this.ending}) before the expected bytes; got ${JSON.stringify(this.body.slice(-200))}`)
      await Promise.race([once(this, 'data'), this.done])
    }
  }
}

/** Resolves with the error code of a new TCP connection to `url` (ECONNREFUSED once the listener closed), or "connected". */
export function refused (url: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1')
    socket.on('connect', () => { socket.destroy(); resolve('connected') })
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })
}
