// Starts the demo services: the live service as a pool of replicas (replicas.js), and the files
// service. Tests import this to exercise the upstreams without an ingress.
import { startLiveReplicas } from './replicas.js'
import { startFiles } from './upstream/files.js'
import { startGrpc } from './upstream/grpc.js'

export async function startUpstreams (config, log) {
  const { host, livePort, tickMs } = config
  const replicas = await startLiveReplicas({ host, port: livePort, count: config.liveReplicas ?? 1, tickMs, log })
  let files = null
  try {
    files = await startFiles({ host, port: config.filesPort, downloadMb: config.downloadMb, downloadMbPerS: config.downloadMbPerS, slowMs: config.slowMs, log })
    const grpc = await startGrpc({ host, port: config.grpcUpstreamPort ?? 0, tickMs, log })
    // `live.url`: the first replica, where WebSocket upgrades go (the pool does not balance them yet).
    const live = { url: replicas.urls[0], replicas }
    return { live, files, grpc, close: () => Promise.all([replicas.close(), files.app.close(), grpc.close()]) }
  } catch (err) {
    await Promise.all([replicas.close(), files?.app.close()])
    throw err
  }
}
