// Plain statistics over lists of figures and over the per-round runs of load results.

export function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** The value at percentile `p` (0..100) of a list of numbers. */
export function percentile (values, p) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

/**
 * `result`'s `field` relative to `base`'s: the median of the per-round ratios. Both ran in the
 * same round, back to back, so a burst of load from other processes skews one round, not the
 * figure. For a cost (CPU per request) pass inverse, so that higher is better as for req/s.
 */
export function ratio (result, base, field = 'rps', inverse = false) {
  return median(result.runs.map((run, i) => {
    const value = run[field] / base.runs[i][field]
    return inverse ? 1 / value : value
  }))
}
