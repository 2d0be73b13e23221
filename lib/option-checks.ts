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
      if (typeof value !== 'function') throw new Invalid(name, 'expected a function')
      return value as NonNullable<typeof value>
    },
    optionalObject (name, value) {
      if (value !== undefined && (typeof value !== 'object' || value === null)) throw new Invalid(name, 'expected an object')
      return value
    },
    flag (name, value, fallback) {
      if (value === undefined) return fallback
      if (typeof value !== 'boolean') throw new Invalid(name, 'expected a boolean')
      return value
    }
  }
}
