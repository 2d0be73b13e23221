import http from 'node:http'

/** What a client saw: status, headers, body, when the head and each chunk arrived, and how it ended. */
export interface Received {
  status: number
  headers: http.IncomingHttpHeaders
  trailers: NodeJS.Dict<string>
  headersAt: number
  chunks: Array<{ at: number, data: string }>
  body: string
  /** 'end' for a complete response, 'cut' when the connection broke before the end. */
  ending: 'end' | 'cut'
}

/** A request with node:http on its own connection, recording when each piece arrived. */
export function receive (url: string, options: http.RequestOptions = {}, body?: Buffer | string): Promise<Received> {
  return new Promise((resolve, reject) => {
    const start = Date.now()
    const req = http.request(url, { agent: false, ...options }, (res) => {
      const received: Received = { status: res.statusCode ?? 0, headers: res.headers, trailers: {}, headersAt: Date.now() - start, chunks: [], body: '', ending: 'cut' }
      res.setEncoding('latin1')
      res.on('data', (data: string) => { received.chunks.push({ at: Date.now() - start, data }); received.body += data })
      res.on('end', () => { received.ending = 'end'; received.trailers = res.trailers })
      res.on('error', () => { received.ending = 'cut' })
      res.on('close', () => resolve(received))
    })
    req.on('error', reject)
    req.end(body)
  })
}
