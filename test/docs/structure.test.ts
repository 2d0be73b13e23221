// README.md and docs/**/*.md read as one set of pages: headings never skip a level, every
// relative link points at a file of the repository, and every `#anchor` at a heading of its page.
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const ROOT = realpathSync(fileURLToPath(new URL('../..', import.meta.url)))

function pages (): string[] {
  const walk = (dir: string): string[] => readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? walk(join(dir, entry.name)) : entry.name.endsWith('.md') ? [join(dir, entry.name)] : [])
  return [join(ROOT, 'README.md'), ...walk(join(ROOT, 'docs'))]
}

/** The page's lines outside code blocks, with their 1-based numbers. */
function prose (path: string): Array<[number, string]> {
  let inCode = false
  const lines: Array<[number, string]> = []
  readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
    if (line.startsWith('```')) inCode = !inCode
    else if (!inCode) lines.push([i + 1, line])
  })
  return lines
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes. */
function anchor (heading: string): string {
  return heading.toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')
}

function anchors (path: string): Set<string> {
  return new Set(prose(path).flatMap(([, line]) => {
    const heading = /^#+ (.*)$/.exec(line)
    return heading === null ? [] : [anchor(heading[1])]
  }))
}

t.test('headings start at one # and never skip a level', async (t) => {
  const jumps: string[] = []
  for (const path of pages()) {
    let level = 0
    for (const [number, line] of prose(path)) {
      const hashes = /^(#+) /.exec(line)?.[1].length
      if (hashes === undefined) continue
      if (hashes > level + 1) jumps.push(`${relative(ROOT, path)}:${number}: ${line}`)
      level = hashes
    }
  }
  t.same(jumps, [], 'no heading deeper than one level below the one before it')
})

t.test('relative links and anchors resolve', async (t) => {
  const broken: string[] = []
  for (const path of pages()) {
    for (const [number, line] of prose(path)) {
      for (const [, target] of line.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target)) continue
        const [file, hash] = target.split('#')
        const linked = file === '' ? path : join(dirname(path), file)
        const ok = existsSync(linked) && (hash === undefined || anchors(linked).has(hash))
        if (!ok) broken.push(`${relative(ROOT, path)}:${number}: ${target}`)
      }
    }
  }
  t.same(broken, [], 'every link points at an existing file and heading')
})
