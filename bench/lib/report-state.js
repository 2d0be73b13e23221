// What the benches collect during a run for bench/report.js to write at the end.

/**
 * Every printed table (report.js charts them), the goals with the figure measured, and why
 * a target was skipped (name -> reason).
 */
export const report = { tables: [], goals: [], skipped: new Map() }

/** A goal of the issue: `measured` as text, `met`, and when missed, by how much (`missedBy`). */
export function addGoal (scenario, goal, measured, met, missedBy = '') {
  report.goals.push({ scenario, goal, measured, met, missedBy })
}
