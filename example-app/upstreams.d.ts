// Types for the tests that import the demo services (the example itself is plain JavaScript).
import type { FastifyInstance } from 'fastify'

export interface UpstreamConfig {
  host: string
  livePort: number
  /** How many live replicas (live-1, live-2...); default 1. */
  liveReplicas?: number
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

export interface LiveReplicas {
  urls: string[]
  names: Array<[string, string]>
  list: () => Array<{ name: string, running: boolean }>
  stop: (name: string) => Promise<'done' | 'unchanged' | 'busy' | 'unknown'>
  start: (name: string) => Promise<'done' | 'unchanged' | 'busy' | 'unknown'>
  /** Each running replica stopped, started and answering in turn; 'busy' if one is already under way. */
  rollingRestart: () => Promise<'done' | 'busy'>
  close: () => Promise<unknown>
}

export function startUpstreams (config: UpstreamConfig, log: (line: string) => void): Promise<{
  /** `url`: the first replica. */
  live: { url: string, replicas: LiveReplicas }
  files: DemoService
  close: () => Promise<unknown>
}>
