import type { FastifyRequest } from 'fastify'
import type { OutgoingHttpHeaders } from 'node:http'
import type { UpstreamCall } from '../upstream/call.js'

/**
 * Adds this hop's `Server-Timing` metrics, after any the upstream sent, so browser devtools
 * show where the time went: `upstream` (ms from sending the request upstream to its response
 * head) and, when the request has a deadline, `budget` (ms it had left at that moment).
 */
export function addServerTiming (headers: OutgoingHttpHeaders, call: UpstreamCall, request: FastifyRequest, withDeadline: boolean): void {
  let value = `upstream;dur=${(performance.now() - call.sentAt).toFixed(1)}`
  const remaining = withDeadline ? request.deadline.remaining() : Infinity
  if (remaining !== Infinity) value += `, budget;desc="deadline remaining";dur=${remaining}`
  const sent = headers['server-timing']
  headers['server-timing'] = sent === undefined ? value : `${Array.isArray(sent) ? sent.join(', ') : String(sent)}, ${value}`
}
