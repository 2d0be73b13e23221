// The demo services, as each pod of the headless Service runs them (services.yaml): one live
// replica on LIVE_PORT and the files service on FILES_PORT, on HOST. The live service names
// itself REPLICA_NAME (the pod's name, from the downward API) in `x-replica`.
import closeWithGrace from 'close-with-grace'
import { readConfig } from '../config.js'
import { startLive } from '../upstream/live.js'
import { startFiles } from '../upstream/files.js'

const config = readConfig()
const log = (line) => console.log(line)
const { host, tickMs } = config
const live = await startLive({ host, port: config.livePort, tickMs, log, name: process.env.REPLICA_NAME || 'live' })
const files = await startFiles({ host, port: config.filesPort, downloadMb: config.downloadMb, downloadMbPerS: config.downloadMbPerS, slowMs: config.slowMs, log })
// SIGTERM: open streams end cleanly, WebSockets get 1001; the ingress reconnects elsewhere.
closeWithGrace({ delay: 10_000 }, async () => {
  await Promise.all([live.app.close(), files.app.close()])
})
console.log(`demo services listening: live ${live.url}, files ${files.url}`)
