// A gRPC client of the example, through the ingress's gRPC listener (GRPC_PORT, h2c):
//   node example-app/grpc-client.js unary [--delay MS]    one Quote call; --delay makes the service
//                                                          answer late (past the 2 s deadline: status 4)
//   node example-app/grpc-client.js ticker [--for MS]     the Watch stream, printed tick by tick until
//                                                          Ctrl-C, or this client's deadline after MS
// --address host:port (default 127.0.0.1:$GRPC_PORT or 3003), --symbol NAME. Prints every message and
// the call's final status (code, name, message); exits 0 when that status is OK, else 1.
import { parseArgs } from 'node:util'
import { Ticker, grpc } from './grpc/service.js'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    address: { type: 'string', default: `127.0.0.1:${process.env.GRPC_PORT || 3003}` },
    symbol: { type: 'string', default: 'STRM' },
    for: { type: 'string' },
    delay: { type: 'string', default: '0' }
  }
})
const mode = positionals[0] ?? 'ticker'
if (!['unary', 'ticker'].includes(mode)) {
  console.error(`usage: node example-app/grpc-client.js [unary|ticker] [--for MS] [--delay MS] [--address host:port]; got "${mode}"`)
  process.exit(2)
}

const client = new Ticker(values.address, grpc.credentials.createInsecure())
const started = Date.now()
// A deadline of this client's own: grpc-js ends the call with DEADLINE_EXCEEDED when it passes,
// and sends it as grpc-timeout (the ingress passes it on, the service could read it).
const options = values.for ? { deadline: started + Number(values.for) } : {}
const since = () => `${Date.now() - started} ms`
console.log(`${mode} via ${values.address}${values.for ? `, deadline ${values.for} ms` : ''}`)

if (mode === 'unary') {
  client.Quote({ symbol: values.symbol, delayMs: Number(values.delay) }, options, (err, tick) => {
    if (tick) console.log(`quote ${tick.symbol} ${tick.price} at +${since()}`)
    finish(err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' })
  })
} else {
  const call = client.Watch({ symbol: values.symbol }, options)
  call.on('data', (tick) => console.log(`tick ${tick.n} ${tick.symbol} ${tick.price} at +${since()}`))
  // 'status' comes after the last message, whether the call ended well or not.
  call.on('status', finish)
  call.on('error', () => {}) // reported by 'status'
  process.once('SIGINT', () => call.cancel())
}

function finish ({ code, details }) {
  console.log(`status ${code} ${grpc.status[code]}${details ? `: ${details}` : ''} at +${since()}`)
  client.close()
  process.exitCode = code === grpc.status.OK ? 0 : 1
}
