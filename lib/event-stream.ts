/**
 * Whether a Content-Type is an event stream (Server-Sent Events): the media type
 * `text/event-stream` in any case, with or without parameters. The one rule for both plugins:
 * the deadline ends such a response cleanly at expiry, the proxy follows its event boundaries.
 * Without a regular expression: the deadline asks on every response that goes out.
 */
export function isEventStreamType (type: unknown): boolean {
  if (typeof type !== 'string') return false
  const value = type.trimStart()
  if (value.length < 17 || value.slice(0, 17).toLowerCase() !== 'text/event-stream') return false
  // Nothing after the type, or parameters: `text/event-streams` is another type.
  const rest = value.slice(17).trimStart()
  return rest === '' || rest[0] === ';'
}
