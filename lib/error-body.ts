import { STATUS_CODES } from 'node:http'

/** The shape of every error body the plugins send: stable `code`, no stack, no addresses. */
export interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

export function errorBody (err: { statusCode?: number, code: string, message: string }, statusCode = err.statusCode ?? 500): ErrorBody {
  return {
    statusCode,
    code: err.code,
    error: STATUS_CODES[statusCode] ?? 'Error',
    message: err.message
  }
}
