// Waiting and timestamps, shared by the benches and the soak.
import { setTimeout as sleep } from 'node:timers/promises'

export const wait = sleep

/** Monotonic clock shared by every process on the machine (CLOCK_MONOTONIC), in ms. */
export function nowMs () {
  return Number(process.hrtime.bigint()) / 1e6
}
