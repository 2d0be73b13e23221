// The option checks both plugins run at registration, written once. Each plugin binds them to
// its own error (`FST_STREAMLINE_INVALID_OPTION`, `FST_STREAMLINE_PROXY_INVALID_OPTION`), so a
// message names the plugin and the option.

/** An error built from the option's name and what is wrong with it. */
export type OptionError = new (name: string, why: string) => Error

export interface OptionChecks {
  /** Milliseconds: a finite number >= 0; `fallback` when undefined. */
  duration: (name: string, value: unknown, fallback: number) => number
  /** A function, or null when undefined. */
  optionalFunction: <T>(name: string, value: T | undefined) => NonNullable<T> | null
  /** An object (any non-null one), or undefined. */
  optionalObject: <T>(name: string, value: T | undefined) => T | undefined
  /** A boolean; `fallback` when undefined. */
  flag: (name: string, value: unknown, fallback: boolean) => boolean
  /** An integer >= `min` (counts, or ms); `fallback` when undefined. */
  integer: <T extends number | null | undefined>(name: string, value: unknown, fallback: T, min: number) => number | T
  /** Refuses the first key of `options` not in `known`, naming it `path + key` and the nearest known name. */
  knownKeys: (path: string, options: object, known: ReadonlySet<string>) => void
}

export function optionChecks (Invalid: OptionError): OptionChecks {
  return {
    duration (name, value, fallback) {
      if (value === undefined) return fallback
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
        throw new Invalid(name, `expected milliseconds (a finite number >= 0), got ${String(value)}`)
      }
      return value
    },
    optionalFunction (name, value) {
      if (value === undefined) return null
      if (typeof value !== 'function') throw new Invalid(name, `expected a function, got ${describeValue(value)}`)
      return value as NonNullable<typeof value>
    },
    optionalObject (name, value) {
      if (value !== undefined && (typeof value !== 'object' || value === null)) throw new Invalid(name, `expected an object, got ${describeValue(value)}`)
      return value
    },
    flag (name, value, fallback) {
      if (value === undefined) return fallback
      if (typeof value !== 'boolean') throw new Invalid(name, `expected a boolean, got ${describeValue(value)}`)
      return value
    },
    integer (name, value, fallback, min) {
      if (value === undefined) return fallback
      if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
        throw new Invalid(name, `expected an integer >= ${min}, got ${describeValue(value)}`)
      }
      return value
    },
    knownKeys (path, options, known) {
      for (const key of Object.keys(options)) {
        if (!known.has(key)) throw new Invalid(path + key, unknownOption(key, known))
      }
    }
  }
}

/** `unknown option`, with the nearest known name when one is close enough to be a typo of it. */
export function unknownOption (name: string, known: Iterable<string>): string {
  const nearest = nearestName(name, known)
  return nearest === undefined ? 'unknown option' : `unknown option (did you mean ${nearest}?)`
}

/**
 * The name in `known` closest to `name` (case ignored; edits: insert, delete, replace, swap two
 * neighbours), when at most a third of its letters (at least one) differ; the first on a tie.
 */
export function nearestName (name: string, known: Iterable<string>): string | undefined {
  const allowed = Math.max(1, Math.floor(name.length / 3))
  let best: string | undefined
  let bestDistance = allowed + 1
  for (const candidate of known) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

/** Optimal string alignment distance: Levenshtein plus the swap of two adjacent letters. */
function editDistance (a: string, b: string): number {
  // rows[i][j]: distance between a's first i and b's first j characters
  const rows = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) rows[0][j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      rows[i][j] = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) rows[i][j] = Math.min(rows[i][j], rows[i - 2][j - 2] + 1)
    }
  }
  return rows[a.length][b.length]
}

/** A value as an error message shows it: strings and arrays as JSON (cut at 80 characters), no object dumped. */
export function describeValue (value: unknown): string {
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'string' || Array.isArray(value)) return cut(JSON.stringify(value) ?? 'an array')
  if (typeof value === 'object' && value !== null) return 'an object'
  return String(value)
}

/** A URL option's value as describeValue shows it, with any credentials (`user:password@`) left out. */
export function describeUrl (value: unknown): string {
  return describeValue(typeof value === 'string' ? value.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^/?#]*@/i, '$1…@') : value)
}

const cut = (text: string): string => text.length > 80 ? `${text.slice(0, 80)}…` : text
