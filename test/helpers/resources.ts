import { readdirSync } from 'node:fs'

/** This process's open file descriptors. */
export function fds (): number {
  return readdirSync('/proc/self/fd').length
}

/** This process's active handles and requests, counted by kind. */
export function handles (): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const name of process.getActiveResourcesInfo()) counts[name] = (counts[name] ?? 0) + 1
  return counts
}

/** Waits until `check()` holds: closing sockets finish on later turns of the event loop. Bounded, so a leak fails rather than hangs. */
export async function settled (check: () => boolean): Promise<void> {
  const until = Date.now() + 5000
  while (!check() && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 20))
}
