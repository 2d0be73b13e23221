// What the benches collect during a run for bench/report.js to write at the end.

/**
 * Every printed table, the goals with the figure measured, bars (a target's ratio to
 * @fastify/http-proxy in one scenario), and why a target was skipped (name -> reason).
 */
export const report = { tables: [], goals: [], bars: [], skipped: new Map() }

/** A goal of the issue: `measured` as text, `met`, and when missed, by how much (`missedBy`). */
export function addGoal (scenario, goal, measured, met, missedBy = '') {
  report.goals.push({ scenario, goal, measured, met, missedBy })
}

/** Adds each proxied result's ratio to http-proxy of `field` to the chart, under `scenario`. */
export function addBars (scenario, results, value) {
  for (const result of results) {
    if (result.name === 'direct') continue
    const v = value(result)
    if (Number.isFinite(v)) report.bars.push({ scenario, target: result.name, value: v })
  }
}
