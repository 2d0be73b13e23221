import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { ReplicaSpec } from './replica.js'
import type { ReplicaOption } from '../types.js'

// Where a pool's replica set comes from when it can change while running: every address of
// each host name (a Kubernetes headless Service, a Docker Compose service name), or a user's
// function (Consul, the Kubernetes API...). Asked once before the server starts and then every
// `interval`; a failed or empty answer keeps the set as it was (a DNS hiccup must not empty a
// pool). The timer never keeps the process alive.

export interface ResolveSettings {
  dns: boolean
  replicas: (() => Promise<ReplicaOption[]>) | null
  /** ms between two refreshes. Default 10000. */
  interval: number
}

/** A member of the set: where to connect, the Host it is called by, its weight. */
export interface ResolvedMember {
  origin: string
  host: string
  weight: number
}

export class ReplicaResolver {
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly settings: ResolveSettings, private readonly given: readonly ReplicaSpec[],
    private readonly apply: (members: ResolvedMember[]) => void, private readonly failed: (err: Error) => void) {}

  /** The first answer, awaited before the server serves; then the refresh timer. */
  async start (): Promise<void> {
    await this.refresh()
    // refresh() never rejects: it reports its own failures.
    this.timer = setInterval(() => { this.refresh().catch(() => {}) }, this.settings.interval)
    this.timer.unref()
  }

  close (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  async refresh (): Promise<void> {
    try {
      const specs = this.settings.replicas === null ? this.given : (await this.settings.replicas()).map(toSpec)
      const members = this.settings.dns ? (await Promise.all(specs.map(expand))).flat() : specs.map(member)
      if (members.length === 0) throw new Error('the replica set resolved to no replica; the previous set is kept')
      this.apply(members)
    } catch (err) {
      this.failed(err as Error)
    }
  }
}

function toSpec (resolved: ReplicaOption): ReplicaSpec {
  if (typeof resolved === 'string') return { url: resolved, weight: 1 }
  return { url: resolved.url, weight: resolved.weight ?? 1 }
}

/** One member per address of the host name (the Host header keeps the name). */
async function expand (spec: ReplicaSpec): Promise<ResolvedMember[]> {
  const url = new URL(spec.url)
  const name = url.hostname.replace(/^\[|\]$/g, '')
  if (isIP(name) !== 0) return [member(spec)]
  const addresses = await lookup(name, { all: true })
  return addresses.map(({ address, family }) => ({
    origin: `${url.protocol}//${family === 6 ? `[${address}]` : address}${url.port === '' ? '' : ':' + url.port}`,
    host: url.host,
    weight: spec.weight
  }))
}

function member (spec: ReplicaSpec): ResolvedMember {
  const url = new URL(spec.url)
  return { origin: url.origin, host: url.host, weight: spec.weight }
}
