// The Ticker service's definition, loaded from ticker.proto at run time with @grpc/proto-loader
// (no generated code): the server (upstream/grpc.js) and the client script share it.
import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import { loadSync } from '@grpc/proto-loader'

const PROTO = fileURLToPath(new URL('./ticker.proto', import.meta.url))

// longs as numbers, defaults filled in: what a JavaScript reader expects of a message.
const definition = loadSync(PROTO, { keepCase: false, longs: Number, defaults: true })

/** demo.Ticker: `.service` for a server, and a client constructor. */
export const Ticker = grpc.loadPackageDefinition(definition).demo.Ticker

/** The path prefix every Ticker call has (`/demo.Ticker/Quote`...): the ingress routes on it. */
export const TICKER_PREFIX = '/demo.Ticker'

export { grpc }
