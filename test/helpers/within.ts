// A bound for every wait: a regression fails in seconds, naming what never came, instead of
// hanging until tap's file timeout.

/** What `promise` resolves to, or a rejection "`missing` (not within `ms` ms)" if it takes longer. */
export async function within<T> (ms: number, promise: Promise<T>, missing: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${missing} (not within ${ms} ms)`)), ms)
  })
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}
