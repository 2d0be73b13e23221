// What `npm pack` puts in the tarball: the built dist/, LICENSE, README.md and package.json;
// no tests and no source maps (the build makes none: they would point at .ts files the package
// does not ship). Reads the dist/ that `npm test` builds first (--ignore-scripts: no rebuild here).
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const run = promisify(execFile)
const root = new URL('../..', import.meta.url).pathname

async function packedFiles (): Promise<string[]> {
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, timeout: 60_000 })
  const [pack] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>
  return pack.files.map(f => f.path).sort()
}

/** Every file an `exports` entry of package.json names. */
function exportTargets (exports: Record<string, string | Record<string, string>>): string[] {
  return Object.values(exports).flatMap(target => typeof target === 'string' ? [target] : Object.values(target)).map(p => p.replace(/^\.\//, ''))
}

t.test('the tarball holds dist, LICENSE, README.md and package.json, and every file the exports name', async (t) => {
  const files = await packedFiles()
  t.same(files.filter(f => !f.startsWith('dist/')), ['LICENSE', 'README.md', 'package.json'])
  t.same(files.filter(f => f.startsWith('dist/') && !/\.(js|d\.ts)$/.test(f)), [], 'dist/: only .js and .d.ts files')
  t.same(files.filter(f => /(^|\/)(test|tests|__tests__)\/|\.test\.|\.types\./.test(f)), [], 'no tests')
  t.same(files.filter(f => f.endsWith('.map')), [], 'no source maps')
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
  t.same(exportTargets(pkg.exports).filter(f => !files.includes(f)), [], 'each export\'s files are in it')
  t.ok(files.includes(pkg.main.replace(/^\.\//, '')) && files.includes(pkg.types.replace(/^\.\//, '')), 'main and types too')
  const js = files.filter(f => f.endsWith('.js'))
  t.ok(js.length > 10, `${js.length} .js files`)
  const pointingAtMaps = []
  for (const file of js) if ((await readFile(join(root, file), 'utf8')).includes('sourceMappingURL')) pointingAtMaps.push(file)
  t.same(pointingAtMaps, [], 'no .js file points at a source map it does not ship')
})

t.test('the licence: MIT in package.json and in a LICENSE file', async (t) => {
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
  t.equal(pkg.license, 'MIT')
  const license = await readFile(join(root, 'LICENSE'), 'utf8')
  t.match(license, /^MIT License\n\nCopyright \(c\) 2026 the fastify-streamline authors\n/)
  t.match(license, 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND')
})
