// Types for the tests that import the replica controls (the example itself is plain JavaScript).
import type { FastifyInstance } from 'fastify'
import type { LiveReplicas } from './upstreams.js'

export function startLiveReplicas (options: { host: string, port: number, count: number, tickMs: number, log: (line: string) => void }): Promise<LiveReplicas>
export function isLoopback (address: string | undefined): boolean
export function replicaRoutes (app: FastifyInstance, options: { replicas: Pick<LiveReplicas, 'list' | 'stop' | 'start' | 'rollingRestart'> }): Promise<void>
