// A bound for every wait: a regression fails in seconds, naming what never came, instead of
// hanging until tap's file timeout.
import { receive, type Received } from './receive.js'

/**
 * What `promise` resolves to, or a rejection "`missing` (not within `ms` ms)" if it takes longer.
 * `missing` may be a function, to describe the state at the time of the timeout.
 */
export async function within<T> (ms: number, promise: Promise<T>, missing: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${typeof missing === 'function' ? missing() : missing} (not within ${ms} ms)`)), ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/** receive.ts's request, bounded: the whole response within 15 s, or a rejection naming the URL. */
export async function boundedReceive (...args: Parameters<typeof receive>): Promise<Received> {
  return await within(15_000, receive(...args), `the whole response to ${args[0]}`)
}
