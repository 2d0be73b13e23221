// Starts both demo services. Tests import this to exercise the upstreams without an ingress.
import { startLive } from './upstream/live.js'
import { startFiles } from './upstream/files.js'

export async function startUpstreams (config, log) {
  const live = await startLive({ host: config.host, port: config.livePort, tickMs: config.tickMs, log })
  try {
    const files = await startFiles({ host: config.host, port: config.filesPort, downloadMb: config.downloadMb, downloadMbPerS: config.downloadMbPerS, slowMs: config.slowMs, log })
    return { live, files, close: () => Promise.all([live.app.close(), files.app.close()]) }
  } catch (err) {
    await live.app.close()
    throw err
  }
}
