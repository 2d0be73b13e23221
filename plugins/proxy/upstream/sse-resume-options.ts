import type { FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { optionChecks } from '../../../lib/option-checks.js'
import { InvalidProxyOptionError } from '../errors.js'

const { integer, knownKeys } = optionChecks(InvalidProxyOptionError)
const KNOWN = new Set(['attempts', 'gap', 'resumeOn'])
const DOWNLOAD_KNOWN = new Set(['attempts', 'gap'])

/** `sseResume`, checked: how a cut event stream is resumed (sse-resume.ts). */
export interface SseResumeSettings {
  /** Resume requests per gap. */
  attempts: number
  /** ms the client may wait, from the cut to the resumed stream's head, all attempts included. */
  gap: number
  /** 'error': only an abnormal end is resumed; 'any-end': a clean end too. */
  resumeOn: 'error' | 'any-end'
}

/** `resumeDownloads`, checked (download-resume.ts). */
export interface DownloadResumeSettings {
  attempts: number
  gap: number
}

/** One call's resume: its settings, and how its first attempt was sent (set by the dispatcher). */
export interface CallResume {
  /** `sseResume`; null: off. */
  readonly settings: SseResumeSettings | null
  /** `resumeDownloads` (GET only); null: off. */
  readonly downloads: DownloadResumeSettings | null
  readonly remaining: (request: FastifyRequest) => number
  agent: Dispatcher | null
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

/** The registration's `resumeDownloads`, or its routes' `config.resumeDownloads` (which wins); null: off. */
export function resolveDownloadResume (option: unknown, config: Record<string, unknown>): DownloadResumeSettings | null {
  const given = config.resumeDownloads ?? option
  const name = config.resumeDownloads === undefined ? 'resumeDownloads' : 'config.resumeDownloads'
  if (given === undefined || given === false) return null
  if (given === true) return { attempts: 3, gap: 5000 }
  if (typeof given !== 'object' || given === null) throw new InvalidProxyOptionError(name, 'expected an object ({ attempts, gap }), true or false')
  const value = given as Record<string, unknown>
  knownKeys(`${name}.`, value, DOWNLOAD_KNOWN)
  return { attempts: integer(`${name}.attempts`, value.attempts, 3, 1), gap: integer(`${name}.gap`, value.gap, 5000, 1) }
}

/** A call's resume state, for an idempotent method only (downloads: GET); null (nothing allocated) when off. */
export function callResume (settings: SseResumeSettings | null, downloads: DownloadResumeSettings | null,
  remaining: (request: FastifyRequest) => number, idempotent: ReadonlySet<string>, method: string): CallResume | null {
  const sse = settings !== null && idempotent.has(method) ? settings : null
  const download = method === 'GET' ? downloads : null
  if (sse === null && download === null) return null
  return { settings: sse, downloads: download, remaining, agent: null, options: null }
}
