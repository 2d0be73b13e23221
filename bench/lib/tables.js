// Printed tables: each is written to the console and kept in the report for the results file.
import { format } from './format.js'
import { report } from './report-state.js'
import { ratio } from './stats.js'

/** Prints rows (arrays of strings) as an aligned text table under a title. */
export function printTable (title, header, rows) {
  report.tables.push({ title, header, rows: rows.map((row) => row.map(String)) })
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => String(row[i]).length)))
  const line = (row) => row.map((cell, i) => String(cell).padEnd(widths[i])).join('  ')
  console.log(`\n${title}\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}`)
  for (const row of rows) console.log(line(row))
}

/**
 * Prints a load comparison of 'direct' (the first result) and proxies, with ratios against
 * direct and against 'http-proxy'. `unit` names what was counted ('request', 'round trip').
 */
export function printProxyComparison (title, unit, results) {
  const [direct] = results
  const httpProxy = results.find((r) => r.name === 'http-proxy')
  printTable(`${title} (CPU: the upstream for direct, else the proxy process alone, nginx: master + worker)`,
    ['path', `${unit}s/s`, 'p99', 'vs direct', 'vs http-proxy', `CPU/${unit}`, 'CPU vs http-proxy', 'rounds', 'failures'],
    results.map((r) => {
      const proxied = r !== direct
      return [r.name, format.int(r.rps), format.ms(r.p99), format.ratio(ratio(r, direct)),
        proxied ? format.ratio(ratio(r, httpProxy)) : '', format.us(r.cpuPerRequest),
        proxied ? format.ratio(ratio(r, httpProxy, 'cpuPerRequest', true)) : '',
        r.rounds.map(format.int).join(' / '), r.failures]
    }))
}
