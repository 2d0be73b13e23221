// The package as users load it: from dist/, through package.json exports, from ESM and CommonJS.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'

const run = promisify(execFile)

t.test('ESM import of the root and subpath exports', async (t) => {
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', `
    import { deadline, deadlineHeaders } from 'fastify-streamline'
    import deadlineSub from 'fastify-streamline/deadline'
    console.log(typeof deadline, deadline === deadlineSub, typeof deadlineHeaders, deadline[Symbol.for('plugin-meta')].name)
  `])
  t.equal(stdout.trim(), 'function true function fastify-streamline-deadline')
})

t.test('CommonJS require of the root and subpath exports', async (t) => {
  const { stdout } = await run(process.execPath, ['-e', `
    const { deadline } = require('fastify-streamline')
    const sub = require('fastify-streamline/deadline')
    console.log(typeof deadline, deadline === sub.default, sub.DeadlineExceededError.name)
  `])
  t.equal(stdout.trim(), 'function true DeadlineExceededError')
})
