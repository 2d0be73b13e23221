// The named import (not the default one): declarations emitted from it name
// `FastifyErrorConstructor` by its module, so they compile under every moduleResolution.
import { createError } from '@fastify/error'
import type { DeadlinePhase } from './types.js'

// Reasons are created on the expiry/disconnect path only; no stack is captured
// because they describe a timing fact, not a code location.
const DeadlineExceededBase = createError<[DeadlinePhase, number]>(
  'FST_STREAMLINE_DEADLINE_EXCEEDED',
  'Request deadline exceeded (phase: %s, after %d ms)',
  504, Error, false
)

/** The signal's reason when a deadline expires. */
export class DeadlineExceededError extends DeadlineExceededBase {
  readonly phase: DeadlinePhase
  readonly elapsed: number

  constructor (phase: DeadlinePhase, elapsed: number) {
    super(phase, elapsed)
    this.phase = phase
    this.elapsed = elapsed
  }
}

/** The signal's reason when the client goes away before the response is complete. */
export const ClientDisconnectedError = createError(
  'FST_STREAMLINE_CLIENT_DISCONNECTED',
  'Client disconnected before the response was complete',
  499, Error, false
)

export const InvalidDeadlineOptionError = createError<[string, string]>(
  'FST_STREAMLINE_INVALID_OPTION',
  'Invalid deadline option %s: %s',
  500, TypeError
)
