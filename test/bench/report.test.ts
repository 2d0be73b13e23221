// bench/report.js without running a bench (no load): which files a full and a partial run
// write, and that the chart has a group for every scenario in the results, each against the
// same references, drawn from the results' own figures.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { test } from 'tap'

interface Table { title: string, header: string[], rows: string[][] }
interface Bar { target: string, value: number, detail?: string }
interface Group { table: string, scenario: string, reference: string, bars: Bar[], uncharted?: true }
interface Run { date: string, machine: string, command: string, pinning: string, load?: string }
interface State { tables: Table[], goals: unknown[], skipped: Map<string, string> }
interface ReportModule {
  resultsName: (names: string[], allNames: string[]) => string
  writeResults: (run: Run, options: { names: string[], allNames: string[], dir: URL, state: State }) => string[]
  parseResults: (text: string) => { run: Run, tables: Table[] }
  chartGroups: (tables: Table[]) => Group[]
  svg: (run: Run, groups: Group[]) => string
}

// A plain-JavaScript module without types: imported by URL, typed here.
const report = await import(new URL('../../bench/report.js', import.meta.url).href) as ReportModule
const RESULTS = new URL('../../bench/results/', import.meta.url)
const BENCHES = ['deadline', 'proxy', 'streams', 'websocket']
const RUN: Run = { date: '2026-01-01T00:00:00Z', machine: 'test machine', command: 'npm run bench -- proxy', pinning: 'no core pinning (test)', load: 'n/a' }

async function committedResults (): Promise<{ run: Run, tables: Table[] }> {
  return report.parseResults(await readFile(new URL('latest.md', RESULTS), 'utf8'))
}

test('a partial run is named after its benches; only a run of every bench is "latest"', async (t) => {
  t.equal(report.resultsName([], BENCHES), 'latest', 'no names: every bench')
  t.equal(report.resultsName(['websocket', 'deadline', 'streams', 'proxy'], BENCHES), 'latest', 'every bench named')
  t.equal(report.resultsName(['proxy'], BENCHES), 'partial-proxy')
  t.equal(report.resultsName(['websocket', 'proxy'], BENCHES), 'partial-proxy-websocket', 'in the benches\' order')
})

test('a partial run writes its own files and leaves the full results alone', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'streamline-bench-report-'))
  t.teardown(async () => await rm(dir, { recursive: true, force: true }))
  const url = pathToFileURL(`${dir}/`)
  await writeFile(join(dir, 'latest.md'), 'full results')
  await writeFile(join(dir, 'latest.svg'), 'full chart')
  const { tables } = await committedResults()
  const state: State = { tables: tables.filter(table => table.title.startsWith('proxy: ')), goals: [], skipped: new Map() }

  const written = report.writeResults(RUN, { names: ['proxy'], allNames: BENCHES, dir: url, state })
  t.same(written, [join(dir, 'partial-proxy.md'), join(dir, 'partial-proxy.svg')], 'the partial run\'s own files')
  t.equal(await readFile(join(dir, 'latest.md'), 'utf8'), 'full results', 'latest.md untouched')
  t.equal(await readFile(join(dir, 'latest.svg'), 'utf8'), 'full chart', 'latest.svg untouched')
  const partial = await readFile(join(dir, 'partial-proxy.md'), 'utf8')
  t.match(partial, /^# Benchmark results \(partial run: proxy\)$/m)
  t.match(partial, '![ratios to @fastify/http-proxy](partial-proxy.svg)', 'it shows its own chart')
  t.match(partial, '## proxy: small GET', 'and its tables')
  t.match(await readFile(join(dir, 'partial-proxy.svg'), 'utf8'), /<svg[^>]*>[\s\S]*small GET, req\/s/)

  const full = report.writeResults({ ...RUN, command: 'npm run bench' }, { names: [], allNames: BENCHES, dir: url, state })
  t.same(full, [join(dir, 'latest.md'), join(dir, 'latest.svg')], 'a full run writes the full results')
  t.match(await readFile(join(dir, 'latest.md'), 'utf8'), /^# Benchmark results \(latest run\)$/m)
  t.match(await readFile(join(dir, 'latest.md'), 'utf8'), '![ratios to @fastify/http-proxy](latest.svg)')
  t.same((await readdir(dir)).sort(), ['latest.md', 'latest.svg', 'partial-proxy.md', 'partial-proxy.svg'])
})

test('partial results are git-ignored', async (t) => {
  const ignore = await readFile(new URL('.gitignore', RESULTS), 'utf8')
  t.ok(ignore.split('\n').includes('partial-*'), 'bench/results/.gitignore ignores partial-*')
})

test('the chart has a group for every scenario in the results, each with every target measured', async (t) => {
  const { tables } = await committedResults()
  t.ok(tables.length >= 9, `latest.md read back: ${tables.length} tables`)
  const groups = report.chartGroups(tables)
  for (const table of tables) {
    const own = groups.filter(group => group.table === table.title)
    t.ok(own.length >= 1 && own.every(group => group.uncharted !== true), `charted: ${table.title}`)
    const measured = table.rows.map(row => row[0]).filter(name => name !== 'direct').sort()
    for (const group of own) t.same(group.bars.map(bar => bar.target).sort(), measured, `${group.scenario}: every target of the table`)
  }
  for (const group of groups.filter(group => group.reference === 'http-proxy')) {
    t.equal(group.bars.find(bar => bar.target === 'http-proxy')?.value, 1, `${group.scenario}: http-proxy is the 1.0 reference`)
  }
  const fanout = groups.find(group => group.table.startsWith('streams: SSE fan-out'))
  t.ok(fanout, 'the SSE fan-out is in the chart')
  t.same(fanout?.bars.map(bar => bar.target), ['streamline-deadline', 'http-proxy', 'nginx', 'caddy'], 'against the same references as the others')
  const chart = report.svg(RUN, groups)
  for (const group of groups) t.ok(chart.includes(`>${group.scenario.replaceAll('&', '&amp;')}`), `the SVG shows "${group.scenario}"`)
})

test('the committed chart is the one drawn from the committed figures', async (t) => {
  const { run, tables } = await committedResults()
  const committed = await readFile(new URL('latest.svg', RESULTS), 'utf8')
  t.equal(committed, report.svg(run, report.chartGroups(tables)), 'run `npm run bench -- --redraw` after changing the chart')
})

test('a scenario is charted against http-proxy from its raw figures, with them shown', async (t) => {
  const fanout: Table = {
    title: 'streams: SSE fan-out, 300 streams open at once, 1 event/s each',
    header: ['path', 'served (first event)', 'failures'],
    rows: [['direct', '300 / 300', '0'], ['streamline-deadline', '300 / 300', '0'], ['http-proxy', '75 / 300', '0'], ['caddy', '150 / 300', '0']]
  }
  const unknown: Table = { title: 'a new bench', header: ['path', 'x'], rows: [['http-proxy', '1']] }
  const groups = report.chartGroups([unknown, fanout])
  t.same(groups.find(group => group.table === fanout.title)?.bars, [
    { target: 'streamline-deadline', value: 4, detail: '300 / 300' },
    { target: 'http-proxy', value: 1, detail: '75 / 300' },
    { target: 'caddy', value: 2, detail: '150 / 300' }
  ], 'served streams over http-proxy\'s, direct left out')
  t.match(groups.find(group => group.table === unknown.title), { uncharted: true, bars: [] }, 'a table without a rule is kept')
  const chart = report.svg(RUN, groups)
  t.match(chart, '4.00x (300 / 300, bar cut)', 'beyond the axis: cut, its figure printed')
  t.match(chart, '2.00x (150 / 300)<')
  t.match(chart, 'a new bench (not charted: no rule in bench/report.js)', 'and the chart says it is missing')
})

test('the pools tables are charted against their own references, and the goals are never read back as a table', async (t) => {
  const cost: Table = {
    title: 'pools: small GET, pool of 3 replicas (one upstream process on 3 ports) vs one upstream URL, 50 connections',
    header: ['proxy upstream', 'req/s', 'p99', 'req/s ratio', 'proxy CPU/request', 'CPU ratio (one / pool)', 'rounds', 'failures'],
    rows: [['one upstream URL', '5,000', '20.00 ms', '1.00', '150 µs', '1.00', '', '0'], ['pool of 3 replicas', '4,900', '21.00 ms', '0.98', '155 µs', '0.97', '', '0']]
  }
  const spread: Table = {
    title: 'pools: spread over 3 replicas of equal weight (one upstream process on 3 ports), 100,000 requests per policy',
    header: ['balance', 'requests received', 'per replica', 'max/min', 'min/max (1.00 = even)', 'req/s', 'failures'],
    rows: [['least-request', '100,000', '', '1.010', '0.990', '5,000', '0'], ['round-robin', '100,000', '', '1.000', '1.000', '5,000', '0']]
  }
  const failover: Table = {
    title: 'pools: one of 3 replica processes SIGKILLed 3.0 s into a 9 s run',
    header: ['window', 'length', 'responses', 'non-2xx', 'p50', 'p99', 'max'],
    rows: [['before the kill', '3.0 s', '1', '0', '', '10.00 ms', ''], ['failover window (kill + 1000 ms)', '1.0 s', '1', '0', '', '40.0 ms', '']]
  }
  const groups = report.chartGroups([cost, spread, failover])
  t.same(groups.filter(group => group.table === cost.title).map(group => [group.reference, group.bars.map(bar => bar.value)]),
    [['one upstream URL', [1, 0.98]], ['one upstream URL', [1, 0.97]]], 'the pool against one upstream URL, req/s and CPU')
  t.same(groups.find(group => group.table === spread.title)?.bars.map(bar => [bar.target, bar.value]), [['least-request', 0.99], ['round-robin', 1]], 'min/max per policy')
  t.same(groups.find(group => group.table === failover.title)?.bars.map(bar => [bar.target, bar.value]),
    [['before the kill', 1], ['failover window (kill + 1000 ms)', 0.25]], 'p99 of each window against the one before the kill')
  t.notOk(groups.some(group => group.uncharted === true), 'every pools table has a rule')

  for (const title of ['Goals of issue 11', 'Goals of issues 11 and 20', 'Goals of issues 11, 20 and 22']) {
    const text = `# Benchmark results\n\n- date: x\n\n## ${title}\n\n| scenario | goal |\n| --- | ---: |\n| a | b |\n\n## pools: x\n\n| h |\n| --- |\n| v |\n`
    t.same(report.parseResults(text).tables.map(table => table.title), ['pools: x'], `"${title}" is not a table of figures`)
  }
})

test('the grpc tables are charted against the direct calls; the memory table has a rule and no bars', async (t) => {
  const unary: Table = {
    title: 'grpc: unary calls/s, 16 in flight on one channel, direct vs through the ingress (h2c, http2: true), 5 x 3 s, medians',
    header: ['path', 'calls/s', 'p99', 'ratio to direct', 'rounds', 'failures'],
    rows: [['direct', '1,440', '10.0 ms', '1.00', '', '0'], ['streamline-deadline', '480', '30.0 ms', '0.33', '', '0']]
  }
  const streams: Table = {
    title: 'grpc: server-stream messages/s, 4 streams of 64-byte messages read as fast as they come, direct vs through the ingress, 5 x 3 s, medians',
    header: ['path', 'messages/s', 'ratio to direct', 'rounds', 'failures'],
    rows: [['direct', '100,000', '1.00', '', '0'], ['streamline-deadline', '60,000', '0.60', '', '0']]
  }
  const memory: Table = {
    title: 'grpc: memory of 200 open server streams through the ingress (one message a second each; 4 client connections, 200 upstream connections: undici 7), ingress process after a GC',
    header: ['proxy', 'RSS before', 'RSS with streams', 'RSS per stream', 'heap per stream', 'failures'],
    rows: [['streamline-deadline', '100.0 MiB', '120.0 MiB', '102.4 KiB', '20.0 KiB', '0']]
  }
  const groups = report.chartGroups([unary, streams, memory])
  t.same(groups.map(group => [group.scenario, group.reference, group.bars.map(bar => [bar.target, bar.value])]), [
    ['gRPC unary calls/s', 'direct', [['streamline-deadline', 0.33]]],
    ['gRPC server-stream messages/s', 'direct', [['streamline-deadline', 0.6]]]
  ], 'the ingress against direct calls, the direct row itself not drawn; the memory table draws nothing')
  t.notOk(groups.some(group => group.uncharted === true), 'every grpc table has a rule')
})

test('the resume tables have a rule and draw nothing (one ingress, no other target)', async (t) => {
  const tables: Table[] = [
    { title: 'resume: 1000 event streams through the ingress (sseResume: true, pool of 2 replica processes), one event every 100 ms each', header: ['measure', 'streams', 'p50', 'p99', 'max', ''], rows: [['client gap', '500', '100 ms', '200 ms', '210 ms', '']] },
    { title: 'resume: timeline of the cut streams, ms after the kill', header: ['step', 'streams', 'first', 'p50', 'p99', 'last'], rows: [['ingress: connect to B started', '500', '1 ms', '2 ms', '3 ms', '4 ms']] },
    { title: 'resume: CPU time of each process', header: ['process', 'window', 'CPU'], rows: [['ingress', '1 s from the kill', '300 ms']] },
    { title: 'resume: delivered events against the replicas\' logs', header: ['streams', 'missing ids (streams)'], rows: [['1000', '0 (0)']] }
  ]
  const groups = report.chartGroups(tables)
  t.same(groups, [], 'no group, and none left uncharted')
})
