/** A route option that may be one hook or a list of them, as a list (Fastify accepts both). */
export function asArray<T> (value: T | T[] | undefined): T[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value : [value]
}
