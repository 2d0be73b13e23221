// Who is told when a deadline aborts, kept without an array while there is one: most requests
// have at most one listener (the proxy's upstream call).

/** Told once when a deadline aborts: a function, or an object with `abort(reason)` (a signal's owner). */
export type AbortListener = ((reason: Error) => void) | { abort: (reason: Error) => void }

/** One listener, or several: most requests have at most one, kept without an array. */
export type AbortListeners = AbortListener | AbortListener[]

export function joinListeners (listeners: AbortListeners | undefined, listener: AbortListener): AbortListeners {
  if (listeners === undefined) return listener
  if (Array.isArray(listeners)) {
    listeners.push(listener)
    return listeners
  }
  return [listeners, listener]
}

export function tellAll (listeners: AbortListeners, reason: Error): void {
  if (Array.isArray(listeners)) for (const listener of listeners) tell(listener, reason)
  else tell(listeners, reason)
}

export function tell (listener: AbortListener, reason: Error): void {
  if (typeof listener === 'function') listener(reason)
  else listener.abort(reason)
}
