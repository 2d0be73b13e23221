// The packed package as an app gets it: `npm pack` (of the dist/ `npm test` builds first),
// unpacked as node_modules/fastify-streamline of a temporary app whose other packages are links
// to this repository's (no network). Its shipped .d.ts must compile in a strict consumer without
// skipLibCheck, under every module setting; require() and import of it must work.
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import ts from 'typescript'
import { CONSUMER, DYNAMIC_CONSUMER, MISTAKES } from './consumer-sources.js'

const run = promisify(execFile)
const root = new URL('../..', import.meta.url).pathname

/** A temporary app with the packed package installed; removed after the test. */
async function consumerApp (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'streamline-consumer-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const { stdout } = await run('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: root, timeout: 60_000 })
  const [{ filename }] = JSON.parse(stdout) as Array<{ filename: string }>
  await run('tar', ['-xzf', join(dir, filename), '-C', dir], { timeout: 30_000 })
  await mkdir(join(dir, 'node_modules'))
  await rename(join(dir, 'package'), join(dir, 'node_modules', 'fastify-streamline'))
  await linkPackages(join(root, 'node_modules'), join(dir, 'node_modules'))
  await writeApp(dir)
  return dir
}

/** Links each package of `from` into `to` (scopes entry by entry), leaving out the package itself. */
async function linkPackages (from: string, to: string): Promise<void> {
  for (const name of await readdir(from)) {
    if (name.startsWith('.') || name === 'fastify-streamline') continue
    if (!name.startsWith('@')) {
      await symlink(join(from, name), join(to, name))
      continue
    }
    await mkdir(join(to, name))
    for (const scoped of await readdir(join(from, name))) await symlink(join(from, name, scoped), join(to, name, scoped))
  }
}

/** The same consumer as an ES module (esm/) and as CommonJS (cjs/); mistakes.ts next to each. */
async function writeApp (dir: string): Promise<void> {
  for (const [folder, type] of [['esm', 'module'], ['cjs', 'commonjs']]) {
    await mkdir(join(dir, folder))
    await writeFile(join(dir, folder, 'package.json'), JSON.stringify({ type }))
    await writeFile(join(dir, folder, 'consumer.ts'), CONSUMER)
    await writeFile(join(dir, folder, 'dynamic.ts'), DYNAMIC_CONSUMER)
    await writeFile(join(dir, folder, 'mistakes.ts'), MISTAKES)
  }
}

/** Declarations every consumer reaches, among them those of the error classes. */
const ENTRY_DECLARATIONS = ['index.d.ts', 'plugins/deadline/index.d.ts', 'plugins/deadline/errors.d.ts', 'plugins/deadline/types.d.ts',
  'plugins/proxy/index.d.ts', 'plugins/proxy/errors.d.ts', 'lib/diagnostics.d.ts'].map(f => `node_modules/fastify-streamline/dist/${f}`)

interface Setting { name: string, folder: 'esm' | 'cjs', file: string, options: ts.CompilerOptions }

// node16 models Node 16, where CommonJS cannot require() an ES module: there a CommonJS file
// loads the package with import(); nodenext (and node20) model require() of ES modules.
const SETTINGS: Setting[] = [
  ...(['esm', 'cjs'] as const).flatMap(folder => [
    { name: `${folder} nodenext`, folder, file: 'consumer.ts', options: { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext } },
    { name: `${folder} bundler`, folder, file: 'consumer.ts', options: { module: folder === 'esm' ? ts.ModuleKind.ESNext : ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Bundler } }
  ]),
  { name: 'esm node16', folder: 'esm', file: 'consumer.ts', options: { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 } },
  { name: 'cjs node16 (import())', folder: 'cjs', file: 'dynamic.ts', options: { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 } },
  { name: 'esm tsc --strict (defaults)', folder: 'esm', file: 'consumer.ts', options: {} }
]

const STRICT: ts.CompilerOptions = { strict: true, skipLibCheck: false, noEmit: true, target: ts.ScriptTarget.ES2022, types: ['node'] }

/**
 * tsc's diagnostics for `files` and for the package's own declarations, one line each, paths
 * relative to `dir`. The other declaration files (Node's, Fastify's) are not checked: the same
 * for every consumer, they are most of tsc's time (about 10 s a setting).
 */
function compile (dir: string, files: string[], options: ts.CompilerOptions): { errors: string[], checked: string[] } {
  const program = ts.createProgram(files.map(f => join(dir, f)), { ...STRICT, ...options })
  const ours = program.getSourceFiles().filter(f => f.fileName.startsWith(`${dir}/`) &&
    (!f.fileName.includes('/node_modules/') || f.fileName.includes('/node_modules/fastify-streamline/')))
  const diagnostics = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics(),
    ...ours.flatMap(f => [...program.getSyntacticDiagnostics(f), ...program.getSemanticDiagnostics(f)])]
  const errors = diagnostics.map(d => {
    const where = d.file === undefined ? '' : `${d.file.fileName.slice(dir.length + 1)}(${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}): `
    return where + ts.flattenDiagnosticMessageText(d.messageText, '\n')
  })
  return { errors, checked: ours.map(f => f.fileName.slice(dir.length + 1)) }
}

t.test('the packed package', async (t) => {
  const dir = await consumerApp(t)

  t.test('its declarations compile in a strict consumer without skipLibCheck, in every module setting', async (t) => {
    for (const { name, folder, file, options } of SETTINGS) {
      const { errors, checked } = compile(dir, [`${folder}/${file}`], options)
      t.same(errors, [], name)
      t.same(ENTRY_DECLARATIONS.filter(f => !checked.includes(f)), [], `${name}: the package's declarations were checked`)
    }
  })

  t.test('a mistake in a route\'s config.deadline is a type error that names what is expected', async (t) => {
    const { errors } = compile(dir, ['esm/mistakes.ts'], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext })
    t.match(errors.join('\n'), /'tmeout' does not exist in type 'RouteDeadlineOptions.*Did you mean to write 'timeout'\?/, 'the typo, and the option it is a typo of')
    t.match(errors.join('\n'), /Type 'true' is not assignable to type 'RouteDeadlineConfig \| undefined'/, 'true: the allowed forms by name')
    t.equal(errors.length, 4, errors.join('\n'))
  })

  t.test('require() and import of it, in a Node process', async (t) => {
    const { stdout: required } = await run(process.execPath, ['-e', `
      const root = require('fastify-streamline')
      const deadline = require('fastify-streamline/deadline')
      console.log(Object.keys(root).sort().join(), deadline.default === root.deadline, typeof root.channels.streamEnd.subscribe)
    `], { cwd: dir, timeout: 30_000 })
    t.equal(required.trim(), `${EXPORTS.join()} true function`)
    const { stdout: imported } = await run(process.execPath, ['--input-type=module', '-e', `
      import * as root from 'fastify-streamline'
      import proxy from 'fastify-streamline/proxy'
      console.log(Object.keys(root).sort().join(), proxy === root.proxy)
    `], { cwd: dir, timeout: 30_000 })
    t.equal(imported.trim(), `${EXPORTS.join()} true`)
  })
})

/** The root's runtime exports. */
const EXPORTS = ['CHANNELS', 'ClientDisconnectedError', 'DeadlineExceededError', 'InvalidDeadlineOptionError', 'budgetLeft', 'channels', 'deadline',
  'deadlineHeaders', 'onRequestAbort', 'proxy', 'releaseDeadline', 'requestSignal', 'writeFiller'].sort()
