// The loop every suite runs: for each replica count, `repetitions` runs on fresh servers, then
// the group's aggregate.
import { note } from './progress.mjs';
import { plural } from './report.mjs';

/**
 * runOnce(replicas, repetition) → run; aggregate(group) → { agg, curves }.
 * Returns { runs, aggs, curves } with curves keyed by replica count.
 */
export async function runGroups({ suite, replicas, repetitions, quick, runOnce, aggregate }) {
  const runs = [];
  const aggs = [];
  const curves = {};
  for (const r of replicas) {
    const group = [];
    for (let k = 1; k <= repetitions; k++) {
      note(`${suite} benchmark: ${plural(r)}, run ${k}/${repetitions}${quick ? ' (quick)' : ''}`);
      const one = await runOnce(r, k);
      one.repetition = k;
      group.push(one);
      runs.push(one);
    }
    const { agg, curves: c } = aggregate(group);
    aggs.push(agg);
    curves[r] = c;
  }
  return { runs, aggs, curves };
}
