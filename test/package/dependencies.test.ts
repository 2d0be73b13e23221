// package.json's dependencies are exactly what the built dist/ imports (a plugin installs no Fastify
// of its own: two copies would mean two sets of types and symbols), read from the files `npm test`
// builds first.
import { readdir, readFile } from 'node:fs/promises'
import { builtinModules } from 'node:module'
import { join } from 'node:path'
import t from 'tap'
import ts from 'typescript'

const root = new URL('../..', import.meta.url).pathname
const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>, devDependencies: Record<string, string>, peerDependencies?: Record<string, string>
}

/** Every file under dir/ whose name ends with `suffix`. */
async function filesUnder (dir: string, suffix: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter(e => e.isFile() && e.name.endsWith(suffix)).map(e => join(e.parentPath, e.name))
}

/**
 * The packages (not relative paths, not Node's builtins) that `files` import (statically,
 * dynamically, by require() or `/// <reference types>`), each with the files importing it.
 */
async function importedPackages (files: string[]): Promise<Map<string, string[]>> {
  const byPackage = new Map<string, string[]>()
  for (const file of files) {
    const { importedFiles, referencedFiles, typeReferenceDirectives } = ts.preProcessFile(await readFile(file, 'utf8'), true, true)
    // A `/// <reference path>` could reach outside the package: listed as if it were a package, it fails the comparison.
    for (const { fileName } of [...importedFiles, ...typeReferenceDirectives, ...referencedFiles]) {
      if (fileName.startsWith('.') || fileName.startsWith('node:') || builtinModules.includes(fileName)) continue
      const name = fileName.split('/').slice(0, fileName.startsWith('@') ? 2 : 1).join('/')
      byPackage.set(name, [...byPackage.get(name) ?? [], file.slice(root.length)])
    }
  }
  return byPackage
}

t.test('dependencies are exactly the packages the built JavaScript imports', async (t) => {
  const imported = await importedPackages(await filesUnder(join(root, 'dist'), '.js'))
  t.ok(imported.size > 0, 'dist/ is built and imports packages')
  t.same([...imported.keys()].sort(), Object.keys(pkg.dependencies).sort(),
    `dist/ imports: ${JSON.stringify(Object.fromEntries(imported))}`)
})

t.test('fastify is the app\'s: a devDependency, checked at registration by fastify-plugin (5.x), never installed by the package', async (t) => {
  t.notOk('fastify' in pkg.dependencies, 'not a dependency')
  t.notOk('fastify' in (pkg.peerDependencies ?? {}), 'not a peer dependency either (the @fastify/* convention)')
  t.match(pkg.devDependencies.fastify, /^\^5\./)
  for (const name of ['ws', '@fastify/websocket']) t.notOk(name in pkg.dependencies, `${name}: used by the example and the tests only`)
  const { deadline, proxy } = await import('fastify-streamline')
  for (const plugin of [deadline, proxy]) {
    t.equal((plugin as unknown as Record<symbol, { fastify?: string }>)[Symbol.for('plugin-meta')].fastify, '5.x')
  }
})

t.test('the declarations import only dependencies, fastify and Node\'s own modules', async (t) => {
  const imported = await importedPackages(await filesUnder(join(root, 'dist'), '.d.ts'))
  const allowed = new Set([...Object.keys(pkg.dependencies), 'fastify'])
  t.same([...imported.keys()].filter(name => !allowed.has(name)), [], `dist/**/*.d.ts import: ${[...imported.keys()].join(', ')}`)
  t.ok(imported.has('fastify'), 'the types extend the app\'s Fastify')
})
