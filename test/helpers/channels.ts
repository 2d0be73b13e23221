import diagnostics from 'node:diagnostics_channel'
import { EventEmitter, once } from 'node:events'
import type { Test } from 'tap'

/** The messages published on `name` during the test; `waitFor(n)` resolves once there are n. */
export function subscribe<T> (t: Test, name: string): { messages: T[], waitFor: (n: number) => Promise<void> } {
  const messages: T[] = []
  const added = new EventEmitter()
  const onMessage = (message: unknown): void => { messages.push(message as T); added.emit('message') }
  diagnostics.subscribe(name, onMessage)
  t.teardown(() => { diagnostics.unsubscribe(name, onMessage) })
  const waitFor = async (n: number): Promise<void> => { while (messages.length < n) await once(added, 'message') }
  return { messages, waitFor }
}
