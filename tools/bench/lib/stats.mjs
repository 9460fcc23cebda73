// Latency histograms (HDR, microseconds) and summaries of repeated runs.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Returns a factory of HDR histograms recording microseconds (1 µs to 120 s, 3 significant digits). */
export function histogramFactory() {
  const hdr = require('hdr-histogram-js');
  return () =>
    hdr.build({
      bitBucketSize: 'packed',
      lowestDiscernibleValue: 1,
      highestTrackableValue: 120_000_000,
      numberOfSignificantValueDigits: 3,
    });
}

/** Milliseconds with 2–3 significant digits, from a histogram in microseconds. */
export function summarize(h) {
  if (!h || h.totalCount === 0) return undefined;
  const ms = (us) => Math.round(us) / 1000;
  return {
    count: h.totalCount,
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    p999: ms(h.getValueAtPercentile(99.9)),
    max: ms(h.maxValue),
    mean: ms(h.mean),
  };
}

/** Points of the percentile curve (percentile, ms) for the chart and the JSON. */
export function percentileCurve(h, maxNines) {
  const pts = [];
  for (let k = 0; k <= 160; k++) {
    const nines = (k / 160) * maxNines;
    const p = 100 * (1 - 10 ** -nines);
    pts.push([Number(p.toFixed(5)), h.getValueAtPercentile(p) / 1000]);
  }
  return pts;
}

/** How far a percentile chart of `count` samples can honestly go: 2 (p99) to 4 (p99.99) nines. */
export function ninesFor(count) {
  return Math.max(2, Math.min(4, Math.floor(Math.log10(Math.max(10, count)))));
}

/** Median (mean of the two middle values for an even count), min and max of the defined values. */
export function stat(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return undefined;
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], values };
}

/** The median of each key over a list of objects of numbers (e.g. the CPU use of each run). */
export function medianByKey(objects) {
  return Object.fromEntries([...new Set(objects.flatMap((o) => Object.keys(o)))].map((k) => [k, stat(objects.map((o) => o[k]))?.median]));
}

/** How many runs of a stat pass an aim. */
export function runsMeeting(st, pass) {
  return st ? st.values.filter(pass).length : 0;
}
