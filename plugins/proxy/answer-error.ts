import type { FastifyReply } from 'fastify'
import type { FastifyError } from '@fastify/error'
import { sendError } from '../../lib/error-answer.js'

/**
 * The proxy's own error answer (a bad path, an upstream failure, a drain): `{ statusCode, code,
 * error, message }` and nothing else. Every header set for the request so far is dropped: an
 * upstream's, copied before its body failed, would describe another response.
 */
export function answerError (reply: FastifyReply, error: FastifyError): void {
  for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name)
  sendError(reply, error, error.statusCode ?? 502)
}
