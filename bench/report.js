// Writes bench/results/latest.md (the run's context, every table, the issue's goals) and
// bench/results/latest.svg (each target's ratio to @fastify/http-proxy per scenario as a
// horizontal bar chart). The SVG is written as text here: a chart library would be a dependency
// for about sixty lines of rectangles.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { settings } from './lib/settings.js'
import { describePinning } from './lib/pinning.js'
import { report } from './lib/report-state.js'

const resultsDir = new URL('results/', import.meta.url)

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

const escapeCell = (cell) => String(cell).replaceAll('|', '\\|')

function markdownTable (header, rows) {
  return [
    `| ${header.map(escapeCell).join(' | ')} |`,
    `| ${header.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((row) => `| ${row.map(escapeCell).join(' | ')} |`)
  ].join('\n')
}

function markdown (run) {
  const goals = report.goals.map((g) => [g.scenario, g.goal, g.measured, g.met ? '**met**' : `missed by ${g.missedBy}`])
  const skipped = [...report.skipped].map(([name, reason]) => `- ${name} skipped: ${reason}`)
  return [
    '# Benchmark results (latest run)',
    '',
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
    '![ratios to @fastify/http-proxy](latest.svg)',
    '',
    '## Goals of issue 11',
    '',
    markdownTable(['scenario', 'goal', 'measured', 'result'], goals),
    '',
    ...report.tables.flatMap((t) => [`## ${t.title}`, '', markdownTable(t.header, t.rows), '']),
    ''
  ].join('\n')
}

const COLORS = { streamline: '#2b6cb0', 'streamline-deadline': '#63b3ed', 'http-proxy': '#a0aec0', nginx: '#38a169', caddy: '#d69e2e' }
const xml = (text) => String(text).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')

// Bars longer than this are cut (their figure is still printed) so one outlier (nginx at 6x)
// does not squash the differences around 1.0 that the chart is for.
const AXIS_MAX = 3

/** Horizontal bars, one group per scenario, one bar per target, with a line at 1.0 (http-proxy). */
function svg (run) {
  const scenarios = [...new Set(report.bars.map((b) => b.scenario))]
  const max = Math.min(AXIS_MAX, Math.max(1.5, ...report.bars.map((b) => b.value)))
  const label = 230
  const plot = 520
  const barH = 16
  const x = (value) => label + (Math.min(value, max) / max) * plot
  const parts = []
  let y = 100
  for (const scenario of scenarios) {
    parts.push(`<text x="10" y="${y}" font-weight="bold">${xml(scenario)}</text>`)
    y += 8
    for (const bar of report.bars.filter((b) => b.scenario === scenario)) {
      const color = COLORS[bar.target] ?? '#718096'
      parts.push(`<text x="${label - 8}" y="${y + 12}" text-anchor="end">${xml(bar.target)}</text>`,
        `<rect x="${label}" y="${y}" width="${(x(bar.value) - label).toFixed(1)}" height="${barH}" fill="${color}"/>`,
        `<text x="${(x(bar.value) + 6).toFixed(1)}" y="${y + 12}">${bar.value.toFixed(2)}x${bar.value > max ? ' (bar cut)' : ''}</text>`)
      y += barH + 4
    }
    y += 22
  }
  const height = y + 10
  return `<svg xmlns="http://www.w3.org/2000/svg" width="860" height="${height}" viewBox="0 0 860 ${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="22" font-size="15" font-weight="bold">Ratio to @fastify/http-proxy (1.0 = the same; higher is better)</text>
<text x="10" y="42" fill="#4a5568">${xml(`${run.date} · ${run.machine}`)}</text>
<text x="10" y="58" fill="#4a5568">${xml(run.command)}</text>
<text x="10" y="74" fill="#4a5568" font-size="11">${xml(run.pinning)}</text>
${parts.join('\n')}
<line x1="${x(1)}" y1="84" x2="${x(1)}" y2="${y - 12}" stroke="#e53e3e" stroke-dasharray="4 3"/>
<text x="${x(1) + 4}" y="${y - 2}" fill="#e53e3e">http-proxy = 1.0</text>
</svg>
`
}

/** Writes latest.md and latest.svg; returns their paths. */
export function writeResults (run) {
  mkdirSync(resultsDir, { recursive: true })
  const md = new URL('latest.md', resultsDir)
  const chart = new URL('latest.svg', resultsDir)
  writeFileSync(md, markdown(run))
  writeFileSync(chart, svg(run))
  return [md.pathname, chart.pathname]
}
