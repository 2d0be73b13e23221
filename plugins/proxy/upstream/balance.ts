import type { FastifyRequest } from 'fastify'
import type { Replica } from './replica.js'
import type { BalanceOption } from '../types.js'

// The selection policies: which of the replicas in rotation takes the next request. Each
// gets the candidates (never empty) and the replicas this request already tried, which it
// avoids while any other is left.

export type Policy = (candidates: readonly Replica[], request: FastifyRequest, tried: readonly Replica[] | null) => Replica

export function policyFor (balance: BalanceOption): Policy {
  if (typeof balance === 'object') return rendezvous(balance.hash)
  if (balance === 'round-robin') return roundRobin
  if (balance === 'random') return (candidates, _request, tried) => weightedRandom(untried(candidates, tried), null)
  return leastRequest
}

/** The candidates not tried yet, or all of them when every one was. */
function untried (candidates: readonly Replica[], tried: readonly Replica[] | null): readonly Replica[] {
  if (tried === null) return candidates
  const left = candidates.filter(replica => !tried.includes(replica))
  return left.length > 0 ? left : candidates
}

/**
 * Power of two random choices over in-flight work, weighted (Envoy's and Traefik's default): of
 * two distinct replicas drawn by weight, the one with less in flight; on a tie the first drawn,
 * so idle replicas share the traffic by weight. Open event streams and tunnels count as in
 * flight, so a replica holding 500 streams is not "idle".
 */
const leastRequest: Policy = (candidates, _request, tried) => {
  const pool = untried(candidates, tried)
  if (pool.length === 1) return pool[0]
  const a = weightedRandom(pool, null)
  const b = weightedRandom(pool, a)
  return b.inflight < a.inflight ? b : a
}

/** A replica drawn by weight, other than `except` (which must be in `pool` when given). */
function weightedRandom (pool: readonly Replica[], except: Replica | null): Replica {
  if (pool.length === 1) return pool[0]
  let total = 0
  for (const replica of pool) total += replica.weight
  if (except !== null) total -= except.weight
  let point = Math.random() * total
  for (const replica of pool) {
    if (replica === except) continue
    point -= replica.weight
    if (point < 0) return replica
  }
  // Rounding left a sliver of the range: the last eligible replica.
  for (let i = pool.length - 1; ; i--) if (pool[i] !== except) return pool[i]
}

/**
 * nginx's smooth weighted round robin: each turn every candidate gains its weight, the one with
 * the most goes and pays the total back. Weights 5:1:1 give a a b a c a a, not a a a a a b c.
 */
const roundRobin: Policy = (candidates, _request, tried) => {
  const pool = untried(candidates, tried)
  let total = 0
  let best = pool[0]
  for (const replica of pool) {
    replica.current += replica.weight
    total += replica.weight
    if (replica.current > best.current) best = replica
  }
  best.current -= total
  return best
}

/**
 * Weighted rendezvous (highest random weight) hashing: each replica scores the key on its own,
 * so a replica that leaves moves only its own keys and every other key stays where it was.
 */
function rendezvous (keyOf: (request: FastifyRequest) => string): Policy {
  return (candidates, request, tried) => {
    const key = String(keyOf(request))
    const pool = untried(candidates, tried)
    let best = pool[0]
    let bestScore = -Infinity
    for (const replica of pool) {
      // A uniform draw in (0, 1) from the pair, turned into a score weighted like an exponential race.
      const draw = (hash32(key, replica.host + '|' + replica.origin) + 0.5) / 4294967296
      const score = -replica.weight / Math.log(draw)
      if (score > bestScore) {
        bestScore = score
        best = replica
      }
    }
    return best
  }
}

/** FNV-1a over both strings, then murmur3's finalizer to spread the bits. */
function hash32 (key: string, salt: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193)
  h = Math.imul(h ^ 0xff, 0x01000193)
  for (let i = 0; i < salt.length; i++) h = Math.imul(h ^ salt.charCodeAt(i), 0x01000193)
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}
