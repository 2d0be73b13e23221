// The "grpc" demo service: a real gRPC server (@grpc/grpc-js, cleartext HTTP/2) with a unary
// call and a server-streaming ticker. Like the other services it knows nothing of the ingress.
import { Ticker, grpc } from '../grpc/service.js'

/** Listens on host:port; `close()` ends open Watch streams with UNAVAILABLE and stops. */
export async function startGrpc ({ host, port, tickMs, log }) {
  const server = new grpc.Server()
  const watches = new Set()
  server.addService(Ticker.service, {
    Quote: (call, callback) => quote(call, callback, log),
    Watch: (call) => watch(call, { tickMs, watches, log })
  })
  const bound = await new Promise((resolve, reject) => {
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => err ? reject(err) : resolve(p))
  })
  log(`[grpc] listening on ${host}:${bound}`)
  return {
    url: `http://${host}:${bound}`,
    address: `${host}:${bound}`,
    close: () => new Promise((resolve) => {
      for (const call of watches) call.destroy()
      // tryShutdown waits for calls in flight; forceShutdown after a bound, for a stuck one.
      const timer = setTimeout(() => server.forceShutdown(), 2000)
      server.tryShutdown(() => { clearTimeout(timer); resolve() })
    })
  }
}

let price = 100
const nextPrice = () => (price = Math.round((price + (Math.random() - 0.5)) * 100) / 100)

function quote (call, callback, log) {
  const { symbol, delayMs } = call.request
  const answer = () => {
    log(`[grpc] Quote ${symbol || 'STRM'} answered`)
    callback(null, { n: 1, symbol: symbol || 'STRM', price: nextPrice(), sentAt: Date.now() })
  }
  if (!delayMs) return answer()
  // Slower than the ingress's timeout on purpose: the client then gets DEADLINE_EXCEEDED from
  // the ingress, and this call a cancel.
  const timer = setTimeout(answer, delayMs)
  call.on('cancelled', () => {
    clearTimeout(timer)
    log(`[grpc] Quote cancelled (the ingress or the client gave up before ${delayMs} ms)`)
  })
}

function watch (call, { tickMs, watches, log }) {
  const symbol = call.request.symbol || 'STRM'
  let n = 0
  watches.add(call)
  const timer = setInterval(() => {
    n += 1
    call.write({ n, symbol, price: nextPrice(), sentAt: Date.now() })
  }, tickMs)
  log(`[grpc] Watch ${symbol} opened`)
  const stop = () => {
    clearInterval(timer)
    watches.delete(call)
  }
  call.on('cancelled', () => {
    stop()
    log(`[grpc] Watch ${symbol} cancelled after ${n} ticks`)
  })
  call.on('close', stop)
  call.on('error', stop)
}
