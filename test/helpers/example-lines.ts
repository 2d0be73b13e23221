import { EventEmitter } from 'node:events'

/**
 * The lines the example prints (its log), kept so a test can assert what the demo services
 * saw, and await a line instead of sleeping.
 */
export class ExampleLines {
  readonly lines: string[] = []
  readonly #added = new EventEmitter()

  push = (line: string): void => {
    this.lines.push(line)
    this.#added.emit('line', line)
  }

  /** Resolves with the first line (already seen or to come) that matches; rejects after `ms`. */
  async waitFor (pattern: RegExp, ms = 10_000): Promise<RegExpExecArray> {
    for (const line of this.lines) {
      const match = pattern.exec(line)
      if (match !== null) return match
    }
    return await new Promise((resolve, reject) => {
      const onLine = (line: string): void => {
        const match = pattern.exec(line)
        if (match === null) return
        stop()
        resolve(match)
      }
      const timer = setTimeout(() => {
        stop()
        reject(new Error(`no line matching ${pattern} within ${ms} ms; lines so far:\n${this.lines.join('\n')}`))
      }, ms)
      const stop = (): void => {
        clearTimeout(timer)
        this.#added.off('line', onLine)
      }
      this.#added.on('line', onLine)
    })
  }
}
