// Checks the library's import graph (index.ts, plugins/, lib/): fails on any import cycle, type-only
// imports included (a cycle of types is still two files that cannot be read one after the other),
// and prints the graph's depth (the longest chain of imports). Run by `npm run lint`.
// `--tree` also prints each file's floor (0: imports nothing of ours).
// Written here rather than taken from eslint-plugin-import-x: its no-cycle rule needs a module
// resolver for TypeScript's `.js` specifiers and a second parser, for a check of 60 lines.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const IMPORT = /^\s*(?:import|export)\s[^'"]*?from\s+'(\.[^']+)'/gm

function sources (dir) {
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return sources(path)
    return path.endsWith('.ts') && !path.endsWith('.d.ts') ? [path] : []
  })
}

function importsOf (file) {
  const text = readFileSync(file, 'utf8')
  return [...text.matchAll(IMPORT)].map(m => resolve(dirname(file), m[1].replace(/\.js$/, '.ts')))
}

const files = [join(root, 'index.ts'), ...sources(join(root, 'plugins')), ...sources(join(root, 'lib'))]
const graph = new Map(files.map(file => [file, importsOf(file)]))
const name = file => relative(root, file)

const floor = new Map()
const onPath = []
const cycles = []
function visit (file) {
  if (floor.has(file)) return floor.get(file)
  const at = onPath.indexOf(file)
  if (at !== -1) {
    cycles.push([...onPath.slice(at), file].map(name).join(' -> '))
    return 0
  }
  onPath.push(file)
  let depth = 0
  for (const dep of graph.get(file) ?? []) depth = Math.max(depth, visit(dep) + 1)
  onPath.pop()
  floor.set(file, depth)
  return depth
}
for (const file of files) visit(file)

const depth = Math.max(...floor.values())
if (process.argv.includes('--tree')) {
  for (const file of [...files].sort((a, b) => floor.get(b) - floor.get(a) || name(a).localeCompare(name(b)))) {
    console.log(String(floor.get(file)).padStart(3), name(file))
  }
}
console.log(`import graph: ${files.length} files, depth ${depth}, ${cycles.length} cycle(s)`)
for (const cycle of cycles) console.error(`import cycle: ${cycle}`)
process.exitCode = cycles.length > 0 ? 1 : 0
