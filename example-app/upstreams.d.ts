// Types for the tests that import the demo services (the example itself is plain JavaScript).
import type { FastifyInstance } from 'fastify'

export interface UpstreamConfig {
  host: string
  livePort: number
  filesPort: number
  tickMs: number
  downloadMb: number
  /** Paces /download; 0 or absent: as fast as the caller reads. */
  downloadMbPerS?: number
  slowMs: number
}

export interface DemoService {
  app: FastifyInstance
  url: string
}

export function startUpstreams (config: UpstreamConfig, log: (line: string) => void): Promise<{
  live: DemoService
  files: DemoService
  close: () => Promise<unknown>
}>
