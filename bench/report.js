// Writes a run's results: the context, every table and the issue's goals as Markdown, and a
// horizontal bar chart (SVG) of each target's ratio to @fastify/http-proxy, one group per
// scenario. A full run (every bench) writes results/latest.md and latest.svg; a partial one
// (`npm run bench -- proxy`) writes results/partial-<benches>.md and .svg (git-ignored) and
// leaves the full results alone. The chart is drawn from the tables alone (CHART_RULES), so
// `npm run bench -- --redraw` can draw it again from a results file's figures. The SVG is
// written as text here: a chart library would be a dependency for about sixty lines of rectangles.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { settings } from './lib/settings.js'
import { describePinning } from './lib/pinning.js'
import { report } from './lib/report-state.js'

const resultsDir = new URL('results/', import.meta.url)
// Older results files name issue 11 alone; parseResults skips either.
const GOALS_TITLE = 'Goals of issues 11, 20 and 22'

function cpuModel () {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m)?.[1] ?? 'unknown CPU'
  } catch {
    return 'unknown CPU'
  }
}

/** The run's context: when, where, how it was started and how loaded the machine was. */
export function describeRun (command, startLoad) {
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    // cpus(), not availableParallelism(): this process is pinned to fewer cores by now
    machine: `${cpus().length} cores, ${cpuModel()}, Node ${process.version}, ${process.platform} ${process.arch}`,
    command,
    pinning: describePinning(),
    load: `1-minute load average ${startLoad.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end`
  }
}

/**
 * The results files' name for a run of the benches `names` out of `allNames`: `latest` when it
 * ran them all (no names means all), else `partial-` and the benches it ran, in `allNames` order.
 */
export function resultsName (names, allNames) {
  const ran = allNames.filter((name) => names.includes(name))
  return names.length === 0 || ran.length === allNames.length ? 'latest' : `partial-${ran.join('-')}`
}

const escapeCell = (cell) => String(cell).replaceAll('|', '\\|')

function markdownTable (header, rows) {
  return [
    `| ${header.map(escapeCell).join(' | ')} |`,
    `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((row) => `| ${row.map(escapeCell).join(' | ')} |`)
  ].join('\n')
}

function markdown (run, state, name) {
  const goals = state.goals.map((g) => [g.scenario, g.goal, g.measured, g.met ? '**met**' : `missed by ${g.missedBy}`])
  const skipped = [...state.skipped].map(([target, reason]) => `- ${target} skipped: ${reason}`)
  const partial = name !== 'latest'
  return [
    partial ? `# Benchmark results (partial run: ${name.slice('partial-'.length).replaceAll('-', ', ')})` : '# Benchmark results (latest run)',
    '',
    ...(partial ? ['A partial run: the full results stay in latest.md.', ''] : []),
    `- date: ${run.date}`,
    `- machine: ${run.machine}`,
    `- command: \`${run.command}\``,
    `- settings: \`${JSON.stringify(settings)}\``,
    `- ${run.pinning}`,
    `- machine load: ${run.load}${run.note ? ` (${run.note})` : ''}`,
    ...skipped,
    '',
    'Ratios are medians of per-round ratios (targets ran back to back in each round); higher is better.',
    '"this project" is `streamline` (the proxy plugin) and `streamline-deadline` (deadline + proxy, as an ingress runs it).',
    '',
    `![ratios to @fastify/http-proxy](${name}.svg)`,
    '',
    `## ${GOALS_TITLE}`,
    '',
    markdownTable(['scenario', 'goal', 'measured', 'result'], goals),
    '',
    ...state.tables.flatMap((t) => [`## ${t.title}`, '', markdownTable(t.header, t.rows), '']),
    ''
  ].join('\n')
}

/**
 * Writes `<name>.md` and `<name>.svg` (see resultsName) into `dir` from `state` (what the benches
 * collected: tables, goals, skipped targets); returns their paths.
 */
export function writeResults (run, { names = [], allNames = [], dir = resultsDir, state = report } = {}) {
  const name = resultsName(names, allNames)
  mkdirSync(dir, { recursive: true })
  const md = new URL(`${name}.md`, dir)
  const chart = new URL(`${name}.svg`, dir)
  writeFileSync(md, markdown(run, state, name))
  writeFileSync(chart, svg(run, chartGroups(state.tables)))
  return [md.pathname, chart.pathname]
}

/** A results file read back: the run's context and its tables (the goals table left out). */
export function parseResults (text) {
  const bullets = [...text.matchAll(/^- (.*)$/gm)].map((m) => m[1])
  const field = (key) => bullets.find((b) => b.startsWith(`${key}: `))?.slice(key.length + 2)
  const keyed = /^(date|machine|command|settings|machine load): |skipped: /
  const run = {
    date: field('date'),
    machine: field('machine'),
    command: field('command')?.replace(/^`(.*)`$/, '$1'),
    pinning: bullets.find((b) => !keyed.test(b)) ?? ''
  }
  const tables = []
  for (const section of text.split(/^## /m).slice(1)) {
    const [title, ...lines] = section.split('\n')
    if (title.startsWith('Goals of issue')) continue
    const [header, , ...rows] = lines.filter((line) => line.startsWith('|')).map(parseRow)
    tables.push({ title, header, rows })
  }
  return { run, tables }
}

// "| a | b \| c |" -> ['a', 'b | c']
function parseRow (line) {
  return line.slice(1, -1).split(/(?<!\\)\|/).map((cell) => cell.trim().replaceAll('\\|', '|'))
}

/** Draws `<name>.svg` again from the figures in `<name>.md` in `dir`; returns its path. */
export function redraw (name = 'latest', dir = resultsDir) {
  const { run, tables } = parseResults(readFileSync(new URL(`${name}.md`, dir), 'utf8'))
  const chart = new URL(`${name}.svg`, dir)
  writeFileSync(chart, svg(run, chartGroups(tables)))
  return chart.pathname
}

// ---- The chart ----

const REFERENCE = 'http-proxy'
// Every group lists its targets in this order, those a scenario did not measure left out.
const TARGET_ORDER = ['streamline', 'streamline-deadline', 'http-proxy', 'nginx', 'caddy']

// A table's cell as a number: "15,861" -> 15861, "33.6 KiB" -> 33.6, "2000 / 2000" -> 2000.
const number = (text) => Number.parseFloat(String(text).replaceAll(',', ''))

function cellOf (table, row, column) {
  const index = table.header.indexOf(column)
  if (index === -1) throw new Error(`chart: table "${table.title}" has no column "${column}"`)
  return row[index]
}

/** Bars from a column that already holds each target's ratio to the reference. */
const ratioColumn = (column) => (table) => table.rows.map((row) => ({ target: row[0], value: number(cellOf(table, row, column)) }))

/**
 * Bars from a raw figure, as the reference row's over each target's when lower is better, else
 * the target's over the reference's; `detail` keeps the figure itself next to the ratio; `against`
 * names the reference row when it is not http-proxy's.
 */
const againstReference = (column, { lowerIsBetter = false, detail = false, against = REFERENCE } = {}) => (table) => {
  const reference = table.rows.find((row) => row[0] === against)
  if (reference === undefined) return []
  const base = number(cellOf(table, reference, column))
  return table.rows.map((row) => {
    const figure = cellOf(table, row, column)
    const value = lowerIsBetter ? base / number(figure) : number(figure) / base
    return { target: row[0], value, ...(detail ? { detail: figure } : {}) }
  })
}

/**
 * How each table of the results becomes chart groups: the first rule whose `match` fits the
 * title gives the groups (scenario name and bars); `reference` names what 1.0 is when it is not
 * http-proxy. A table no rule matches is still listed in the chart, as not charted.
 */
export const CHART_RULES = [
  {
    match: /^deadline: hello world/,
    groups: [{ scenario: () => 'deadline plugin on hello world, req/s', reference: 'fastify + empty plugin', bars: ratioColumn('ratio') }]
  },
  {
    match: /^proxy: small GET/,
    groups: [
      { scenario: () => 'small GET, req/s', bars: ratioColumn('vs http-proxy') },
      { scenario: () => 'small GET, CPU efficiency (1 / CPU per request)', bars: ratioColumn('CPU vs http-proxy') }
    ]
  },
  {
    match: /^proxy: SSE event delay/,
    groups: [{ scenario: () => 'SSE p99 delay (http-proxy / target)', bars: ratioColumn('p99 vs http-proxy (http-proxy / path)') }]
  },
  {
    match: /^proxy: one (\d+) MiB streamed response/,
    groups: [{ scenario: (m) => `${m[1]} MiB download, MiB/s`, bars: ratioColumn('vs http-proxy') }]
  },
  {
    match: /^streams: SSE fan-out, (\d+) streams/,
    groups: [{ scenario: (m) => `SSE fan-out, ${m[1]} streams at once: streams served`, bars: againstReference('served (first event)', { detail: true }) }]
  },
  {
    match: /^streams: one (\d+) MiB upload/,
    groups: [{ scenario: (m) => `${m[1]} MiB upload, MiB/s`, bars: ratioColumn('vs http-proxy') }]
  },
  {
    match: /^streams: (\d+) slow readers/,
    groups: [{ scenario: (m) => `${m[1]} slow readers, peak RSS growth (http-proxy / target)`, bars: ratioColumn('growth vs http-proxy (http-proxy / proxy)') }]
  },
  {
    match: /^websocket: 32-byte echo/,
    groups: [{ scenario: () => 'WebSocket echo, round trips/s', bars: ratioColumn('vs http-proxy') }]
  },
  {
    match: /^websocket: memory of (\d+) idle open tunnels/,
    groups: [{ scenario: (m) => `${m[1]} idle WebSocket tunnels, RSS per tunnel (http-proxy / target)`, bars: againstReference('RSS per tunnel', { lowerIsBetter: true }) }]
  },
  {
    match: /^pools: small GET, /,
    groups: [
      { scenario: () => 'small GET through a pool of 3 replicas, req/s', reference: 'one upstream URL', bars: ratioColumn('req/s ratio') },
      { scenario: () => 'small GET through a pool of 3 replicas, CPU efficiency', reference: 'one upstream URL', bars: ratioColumn('CPU ratio (one / pool)') }
    ]
  },
  {
    match: /^pools: spread over (\d+) replicas/,
    groups: [{ scenario: (m) => `requests per replica over ${m[1]} replicas, min/max`, reference: 'perfectly even', bars: ratioColumn('min/max (1.00 = even)') }]
  },
  {
    match: /^pools: one of (\d+) replica processes SIGKILLed/,
    groups: [{ scenario: (m) => `one of ${m[1]} replicas killed under load, p99 (before / window)`, reference: 'before the kill', bars: againstReference('p99', { lowerIsBetter: true, detail: true, against: 'before the kill' }) }]
  },
  {
    match: /^grpc: unary calls\/s, /,
    groups: [{ scenario: () => 'gRPC unary calls/s', reference: 'direct', bars: ratioColumn('ratio to direct') }]
  },
  {
    match: /^grpc: server-stream messages\/s, /,
    groups: [{ scenario: () => 'gRPC server-stream messages/s', reference: 'direct', bars: ratioColumn('ratio to direct') }]
  },
  // The ingress alone: a figure per stream, nothing to compare it with.
  { match: /^grpc: memory of \d+ open server streams/, groups: [] },
  // One ingress resuming streams across a replica's kill: gaps, a timeline, CPU, delivery counts; nothing to compare.
  { match: /^resume: /, groups: [] },
  // --cpu-prof tables profile one target: nothing to compare.
  { match: / under --cpu-prof: |^hottest functions called from /, groups: [] }
]

const byTarget = (a, b) => rank(a.target) - rank(b.target)
const rank = (target) => (TARGET_ORDER.includes(target) ? TARGET_ORDER.indexOf(target) : TARGET_ORDER.length)

/**
 * The chart's groups for `tables` (as printed by the benches or read back by parseResults):
 * `{ table, scenario, reference, bars: [{ target, value, detail? }] }`, bars in TARGET_ORDER,
 * 'direct' and figures that are not numbers left out. Groups against http-proxy come first, in
 * the tables' order, then those against another reference. A table without a rule gives a
 * group with `uncharted: true` and no bars.
 */
export function chartGroups (tables) {
  const groups = tables.flatMap((table) => {
    const rule = CHART_RULES.find((r) => r.match.test(table.title))
    if (rule === undefined) return [{ table: table.title, scenario: table.title, reference: REFERENCE, bars: [], uncharted: true }]
    const m = rule.match.exec(table.title)
    return rule.groups.map((group) => ({
      table: table.title,
      scenario: group.scenario(m),
      reference: group.reference ?? REFERENCE,
      bars: group.bars(table).filter((bar) => bar.target !== 'direct' && Number.isFinite(bar.value)).sort(byTarget)
    }))
  })
  return [...groups.filter((g) => g.reference === REFERENCE), ...groups.filter((g) => g.reference !== REFERENCE)]
}

const COLORS = { streamline: '#2b6cb0', 'streamline-deadline': '#63b3ed', 'http-proxy': '#a0aec0', nginx: '#38a169', caddy: '#d69e2e' }
const xml = (text) => String(text).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')

// Bars longer than this are cut (their figure is still printed) so one outlier (nginx at 6x)
// does not squash the differences around 1.0 that the chart is for.
const AXIS_MAX = 3
const LABEL_W = 230
const PLOT_W = 520
const BAR_H = 16
// Room right of a cut bar for its figure and notes ("15.63x (2000 / 2000, bar cut)").
const WIDTH = 960

function groupTitle (group) {
  if (group.uncharted) return `${group.scenario} (not charted: no rule in bench/report.js)`
  return group.reference === REFERENCE ? group.scenario : `${group.scenario}, 1.0 = ${group.reference}`
}

function barLabel (bar, max) {
  const notes = [bar.detail, bar.value > max ? 'bar cut' : undefined].filter(Boolean)
  return `${bar.value.toFixed(2)}x${notes.length > 0 ? ` (${notes.join(', ')})` : ''}`
}

/** Horizontal bars, one group per scenario, one bar per target, with a line at 1.0 (the reference). */
export function svg (run, groups) {
  const values = groups.flatMap((g) => g.bars.map((b) => b.value))
  const max = Math.min(AXIS_MAX, Math.max(1.5, ...values))
  const x = (value) => LABEL_W + (Math.min(value, max) / max) * PLOT_W
  const parts = []
  let y = 100
  for (const group of groups) {
    parts.push(`<text x="10" y="${y}" font-weight="bold">${xml(groupTitle(group))}</text>`)
    y += 8
    for (const bar of group.bars) {
      const color = COLORS[bar.target] ?? '#718096'
      parts.push(`<text x="${LABEL_W - 8}" y="${y + 12}" text-anchor="end">${xml(bar.target)}</text>`,
        `<rect x="${LABEL_W}" y="${y}" width="${(x(bar.value) - LABEL_W).toFixed(1)}" height="${BAR_H}" fill="${color}"/>`,
        `<text x="${(x(bar.value) + 6).toFixed(1)}" y="${y + 12}">${xml(barLabel(bar, max))}</text>`)
      y += BAR_H + 4
    }
    y += 22
  }
  const height = y + 10
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="22" font-size="15" font-weight="bold">Ratio to @fastify/http-proxy (1.0 = the same; higher is better)</text>
<text x="10" y="42" fill="#4a5568">${xml(`${run.date} · ${run.machine}`)}</text>
<text x="10" y="58" fill="#4a5568">${xml(run.command)}</text>
<text x="10" y="74" fill="#4a5568" font-size="11">${xml(run.pinning)}</text>
${parts.join('\n')}
<line x1="${x(1)}" y1="84" x2="${x(1)}" y2="${y - 12}" stroke="#e53e3e" stroke-dasharray="4 3"/>
<text x="${x(1) + 4}" y="${y - 2}" fill="#e53e3e">1.0 = http-proxy (or the reference a group names)</text>
</svg>
`
}
