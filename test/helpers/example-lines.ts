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

  /** Resolves with the matching lines once there are `count` of them (seen or to come); rejects after `ms`. */
  async waitForCount (pattern: RegExp, count: number, ms = 10_000): Promise<string[]> {
    const matching = (): string[] => this.lines.filter(line => pattern.test(line))
    if (matching().length >= count) return matching()
    return await new Promise((resolve, reject) => {
      const onLine = (line: string): void => {
        if (!pattern.test(line) || matching().length < count) return
        stop()
        resolve(matching())
      }
      const timer = setTimeout(() => {
        stop()
        reject(new Error(`fewer than ${count} lines matching ${pattern} within ${ms} ms; lines so far:\n${this.lines.join('\n')}`))
      }, ms)
      const stop = (): void => {
        clearTimeout(timer)
        this.#added.off('line', onLine)
      }
      this.#added.on('line', onLine)
    })
  }
}
