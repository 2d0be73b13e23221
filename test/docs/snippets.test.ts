// Every JavaScript and TypeScript block of README.md and docs/**/*.md compiles under `strict`
// against the BUILT package, resolved as a user's app resolves it (`npm run build` first), so
// the docs cannot drift from the API. Each block is checked as a module of its own.
//
// A fragment names the declarations it leans on in an HTML comment on the line above its fence,
// `<!-- snippet: prelude=app,bus -->` (PRELUDES below: each becomes one `import` line on top of
// the block). `<!-- snippet: skip -->` is for a block that is not code; none is today
// (EXPECTED_SKIPS = 0): shell commands, output and diagrams are fenced as `sh` / `text` and are
// not extracted. JS blocks get `checkJs` with the full `strict` set, `noImplicitAny` included.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import t from 'tap'

const ROOT = realpathSync(fileURLToPath(new URL('../..', import.meta.url)))
const EXPECTED_SKIPS = 0
const LANGS: Record<string, 'js' | 'ts'> = { js: 'js', javascript: 'js', ts: 'ts', typescript: 'ts' }

/** Declarations a fragment may ask for; each is a module in the temp dir, imported by name. */
const PRELUDES: Record<string, string> = {
  app: "import type { FastifyInstance } from 'fastify'\nexport declare const app: FastifyInstance",
  tls: 'export declare const key: string\nexport declare const cert: string',
  bus: 'export declare const bus: { subscribe (onEvent: (event: unknown) => void): () => void }',
  buildExport: "import type { RouteHandlerMethod } from 'fastify'\nexport declare const buildExport: RouteHandlerMethod",
  feed: "import type { ServerResponse } from 'node:http'\nexport declare function startFeed (res: ServerResponse, signal: AbortSignal): void"
}

/** Local modules the recipes import, as the files they name would declare them. */
const MODULES: Record<string, string> = {
  // docs/drain.md's cluster recipe imports the example's ingress builder (example-app/ingress.js).
  'ingress.d.ts': "import type { FastifyInstance } from 'fastify'\nexport declare function buildIngress (): Promise<FastifyInstance>"
}

interface Snippet {
  /** Where the block's first line is, e.g. `docs/proxy.md:42`. */
  file: string
  line: number
  lang: 'js' | 'ts'
  code: string
  prelude: string[]
}

function markdownFiles (): string[] {
  const walk = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : entry.name.endsWith('.md') ? [join(dir, entry.name)] : [])
  return [join(ROOT, 'README.md'), ...walk(join(ROOT, 'docs'))]
}

/** The JS/TS blocks of one file, and how many were marked `skip`. Throws on a malformed directive. */
function extract (path: string): { snippets: Snippet[], skipped: number } {
  const file = relative(ROOT, path)
  const lines = readFileSync(path, 'utf8').split('\n')
  const snippets: Snippet[] = []
  let skipped = 0
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\w*)\s*$/.exec(lines[i])
    if (fence === null) continue
    const end = lines.indexOf('```', i + 1)
    if (end === -1) throw new Error(`${file}:${i + 1}: unclosed code block`)
    const directive = directiveAbove(lines, i, file)
    const lang = LANGS[fence[1]]
    if (directive !== null && lang === undefined) throw new Error(`${file}:${i + 1}: a snippet directive above a block that is not JS/TS`)
    if (directive === 'skip') skipped++
    else if (lang !== undefined) snippets.push({ file, line: i + 2, lang, code: lines.slice(i + 1, end).join('\n'), prelude: directive ?? [] })
    i = end
  }
  return { snippets, skipped }
}

/** `'skip'`, the prelude names, or null when the line above the fence is no directive. */
function directiveAbove (lines: string[], fence: number, file: string): 'skip' | string[] | null {
  const match = /^<!-- snippet: (.*) -->$/.exec(lines[fence - 1] ?? '')
  if (match === null) return null
  if (match[1] === 'skip') return 'skip'
  const names = /^prelude=([\w,]+)$/.exec(match[1])?.[1].split(',')
  const unknown = names?.find(name => !Object.hasOwn(PRELUDES, name))
  if (names === undefined || unknown !== undefined) throw new Error(`${file}:${fence}: bad snippet directive "${match[1]}"`)
  return names
}

/** A folder laid out like an app that installed the package: node_modules/fastify-streamline is this repo. */
function consumerDir (): string {
  const dir = mkdtempSync(join(tmpdir(), 'streamline-snippets-'))
  const modules = join(dir, 'node_modules')
  mkdirSync(modules)
  const repoModules = join(ROOT, 'node_modules')
  for (const name of readdirSync(repoModules)) {
    if (!name.startsWith('.') && name !== 'fastify-streamline') symlinkSync(join(repoModules, name), join(modules, name))
  }
  symlinkSync(ROOT, join(modules, 'fastify-streamline'))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }))
  mkdirSync(join(dir, 'preludes'))
  for (const [name, text] of Object.entries(PRELUDES)) writeFileSync(join(dir, 'preludes', `${name}.d.ts`), text + '\n')
  for (const [name, text] of Object.entries(MODULES)) writeFileSync(join(dir, name), text + '\n')
  return dir
}

/** Line 1 is the prelude (or a comment), then the block; `export {}` makes every block a module. */
function snippetSource (snippet: Snippet): string {
  const head = snippet.prelude.length === 0
    ? '// no prelude'
    : snippet.prelude.map(name => `import { ${preludeNames(name)} } from './preludes/${name}.js'`).join('; ')
  return `${head}\n${snippet.code}\nexport {}\n`
}

function preludeNames (name: string): string {
  return [...PRELUDES[name].matchAll(/export declare (?:const|function) (\w+)/g)].map(m => m[1]).join(', ')
}

const OPTIONS: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  allowJs: true,
  checkJs: true,
  esModuleInterop: true,
  types: ['node'],
  // The package's own .d.ts files are checked without skipLibCheck by the package's type test;
  // here only the blocks are under test, not the declarations of every dependency.
  skipLibCheck: true
}

/** Compiles the files in one program; one line per diagnostic, placed at `where(fileName, line)`. */
function compile (files: string[], where: (fileName: string, line: number) => string): string[] {
  const program = ts.createProgram(files, OPTIONS)
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const text = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')
    if (diagnostic.file === undefined || diagnostic.start === undefined) return `TS${diagnostic.code}: ${text}`
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
    return `${where(diagnostic.file.fileName, line)}: TS${diagnostic.code}: ${text}`
  })
}

t.test('every JS/TS block of README.md and docs/ compiles against the built package', async (t) => {
  t.ok(existsSync(join(ROOT, 'dist/index.d.ts')), 'dist/index.d.ts exists (run `npm run build` first)')
  const extracted = markdownFiles().map(extract)
  const snippets = extracted.flatMap(e => e.snippets)
  t.equal(extracted.reduce((sum, e) => sum + e.skipped, 0), EXPECTED_SKIPS, 'blocks marked skip')
  t.ok(snippets.length >= 20, `found the docs' code blocks (${snippets.length})`)
  t.ok(snippets.some(s => s.file === 'README.md'), 'README.md has checked blocks')

  const dir = consumerDir()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const resolved = ts.resolveModuleName('fastify-streamline', join(dir, 'x.ts'), OPTIONS, ts.sys).resolvedModule
  t.equal(resolved?.resolvedFileName, join(ROOT, 'dist/index.d.ts'), "'fastify-streamline' resolves to the built package")

  const files = snippets.map((snippet, i) => {
    const name = join(dir, `snippet-${i}.${snippet.lang}`)
    writeFileSync(name, snippetSource(snippet))
    return name
  })
  const errors = compile(files, (fileName, line) => {
    const snippet = snippets[files.indexOf(fileName)]
    // line is 0-based in the generated file, whose line 0 is the prelude
    return snippet === undefined ? relative(dir, fileName) + `:${line + 1}` : `${snippet.file}:${snippet.line + line - 1}`
  })
  t.same(errors, [], 'no type errors in the docs')
})

t.test('a block that names something the package does not export fails', async (t) => {
  const dir = consumerDir()
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const js = join(dir, 'wrong.js')
  const typed = join(dir, 'wrong-type.ts')
  writeFileSync(js, "import { deadline, proxyy } from 'fastify-streamline'\nconsole.log(deadline, proxyy)\n")
  writeFileSync(typed, "import { channels } from 'fastify-streamline'\nchannels.streamEnd.subscribe(({ endedBy }) => { const n: number = endedBy; return n })\n")
  const errors = compile([js, typed], (fileName, line) => `${relative(dir, fileName)}:${line + 1}`)
  t.ok(errors.some(e => /^wrong\.js:1: TS(2305|2724): .*has no exported member.*'proxyy'/.test(e)), 'the missing export is reported', { errors })
  t.ok(errors.some(e => /^wrong-type\.ts:2: TS2322: Type 'string' is not assignable to type 'number'/.test(e)), 'the wrong message type is reported', { errors })
  t.equal(errors.length, 2, 'nothing else reported')
})
