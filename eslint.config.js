import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'node_modules/**', '.tap/**', 'test/artifacts/**', 'coverage/**']
  }),
  {
    // The library reads top to bottom: a function longer than a screen becomes named steps.
    files: ['index.ts', 'plugins/**/*.ts', 'lib/**/*.ts'],
    rules: { 'max-lines-per-function': ['error', { max: 60 }] }
  }
]
