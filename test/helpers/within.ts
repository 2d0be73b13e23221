// A bound for every wait: a regression fails in seconds, naming what never came, instead of
// hanging until tap's file timeout.

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
