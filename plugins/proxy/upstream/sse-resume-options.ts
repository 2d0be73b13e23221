import type { FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { optionChecks } from '../../../lib/option-checks.js'
import { InvalidProxyOptionError } from '../errors.js'
import type { ConnectGates } from './connect-gate.js'

const { integer, knownKeys } = optionChecks(InvalidProxyOptionError)
const KNOWN = new Set(['attempts', 'gap', 'resumeOn'])

/** `sseResume`, checked: how a cut event stream is resumed (sse-resume.ts). */
export interface SseResumeSettings {
  /** Resume requests per gap. */
  attempts: number
  /** ms the client may wait, from the cut to the resumed stream's head, all attempts included. */
  gap: number
  /** 'error': only an abnormal end is resumed; 'any-end': a clean end too. */
  resumeOn: 'error' | 'any-end'
}

/** One call's resume: its settings, and how its first attempt was sent (set by the dispatcher). */
export interface CallResume {
  readonly settings: SseResumeSettings
  readonly remaining: (request: FastifyRequest) => number
  agent: Dispatcher | null
  gates: ConnectGates | null
  options: Dispatcher.DispatchOptions | null
}

/** The registration's `sseResume`, or its routes' `config.sseResume` (which wins); null: off. */
export function resolveSseResume (option: unknown, config: Record<string, unknown>): SseResumeSettings | null {
  const given = config.sseResume ?? option
  const name = config.sseResume === undefined ? 'sseResume' : 'config.sseResume'
  if (given === undefined || given === false) return null
  if (given === true) return { attempts: 3, gap: 5000, resumeOn: 'error' }
  if (typeof given !== 'object' || given === null) throw new InvalidProxyOptionError(name, 'expected an object ({ attempts, gap, resumeOn }), true or false')
  const value = given as Record<string, unknown>
  knownKeys(`${name}.`, value, KNOWN)
  const resumeOn = value.resumeOn ?? 'error'
  if (resumeOn !== 'error' && resumeOn !== 'any-end') throw new InvalidProxyOptionError(`${name}.resumeOn`, "expected 'error' or 'any-end'")
  return {
    attempts: integer(`${name}.attempts`, value.attempts, 3, 1),
    gap: integer(`${name}.gap`, value.gap, 5000, 1),
    resumeOn
  }
}

/** A call's resume state, for an idempotent method only; null (nothing allocated) when off. */
export function callResume (settings: SseResumeSettings | null, remaining: (request: FastifyRequest) => number, idempotent: ReadonlySet<string>, method: string): CallResume | null {
  if (settings === null || !idempotent.has(method)) return null
  return { settings, remaining, agent: null, gates: null, options: null }
}
