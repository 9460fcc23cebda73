// Formatting shared by the suites' tables, aims and observations.

export function mib(b) {
  return b === undefined ? '–' : `${(b / 1024 / 1024).toFixed(0)} MiB`;
}
export const int = (n) => (n === undefined ? '–' : Math.round(n).toLocaleString('en-US'));
export const ms = (n) => (n === undefined ? '–' : `${n < 10 ? n.toFixed(2) : n.toFixed(1)} ms`);
export const verdict = (ok) => (ok ? ' ✅' : ' ❌');
export const plural = (n) => `${n} replica${n > 1 ? 's' : ''}`;
/** "median (min–max)" when there is more than one run. */
export const spread = (st, f, g = f) => (!st ? '–' : st.values.length > 1 ? `${f(st.median)} (${g(st.min)}–${g(st.max)})` : f(st.median));
export const num = (n) => (n < 10 ? n.toFixed(2) : n.toFixed(1));
export const mibNum = (b) => (b / 1024 / 1024).toFixed(0);

/** A markdown table with one column per replica count: returns its first lines and a row maker. */
export function replicaTable(aggs) {
  const cols = aggs.map((a) => `${plural(a.replicas)}${a.repetitions > 1 ? `, median of ${a.repetitions} runs (range)` : ''}`);
  const row = (what, aim, cell) => `| ${what} | ${aim} | ${aggs.map(cell).join(' | ')} |`;
  const lines = [`| what | aim | ${cols.join(' | ')} |`, `|---|---|${cols.map(() => '---:').join('|')}|`];
  return { lines, row };
}

/** "discovery 0.34, nats-server 0.33, …": cores busy per process, Redis left out. */
export function cpuCell(c) {
  return Object.entries(c)
    .filter(([k, v]) => v !== undefined && k !== 'redis-server')
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(', ');
}

/** The "Aims (…): x — met; …" paragraph of a section, and "All aims met." when none was missed. */
export function aimsParagraph(aims) {
  return [
    `Aims (1 replica, median of its runs): ${aims
      .map(
        (a) =>
          `${a.name} ${a.aim} — **${a.met ? 'met' : 'missed'}**${a.runs > 1 ? ` (${a.runsMeetingAim} of ${a.runs} runs within the aim)` : ''}`,
      )
      .join('; ')}.`,
    aims.some((a) => !a.met) ? '' : 'All aims met.',
  ];
}

/** An observation when processes other than the measured ones used noticeable CPU ("other"). */
export function noiseObservation(others) {
  const noise = others.filter((v) => v !== undefined);
  if (noise.length && Math.max(...noise) >= 0.15)
    return `The machine was not quiet: processes other than the ones measured here used up to ${Math.max(...noise).toFixed(2)} cores (median per phase) while the benchmark ran ("other" in the CPU rows), which shows up in the spread between runs.`;
  return undefined;
}
