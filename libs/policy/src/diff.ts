import { stringify } from 'yaml';

/** Keys shown first, in this order; the rest alphabetically, so equal values render equally. */
const FIRST = ['kind', 'name', 'serviceName', 'description'];

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (typeof v !== 'object' || v === null) return v;
  const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined);
  const rank = (k: string) => (FIRST.includes(k) ? FIRST.indexOf(k) : FIRST.length);
  keys.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  const out: Record<string, unknown> = {};
  for (const k of keys) Object.defineProperty(out, k, { value: canonical((v as Record<string, unknown>)[k]), enumerable: true });
  return out;
}

function render(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  return stringify(canonical(v), { lineWidth: 0 }).replace(/\n$/, '').split('\n');
}

/** Largest LCS table computed; beyond it, the changed middle is shown as removed then added. */
const MAX_CELLS = 4_000_000;

/**
 * Line diff of two values rendered as YAML (`- `/`+ `/`  ` prefixes), empty string when equal;
 * used by dry-run and `meshctl diff`. `undefined`/`null` render as nothing, so creating a
 * policy shows every line added. Keys are ordered kind, name, serviceName, description, then
 * alphabetically, so key order never shows as a change.
 */
export function diffPolicies(before: unknown, after: unknown): string {
  const a = render(before);
  const b = render(after);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  if (start === endA && start === endB) return '';
  const out = a.slice(0, start).map((l) => `  ${l}`);
  const midA = a.slice(start, endA);
  const midB = b.slice(start, endB);
  if (midA.length * midB.length > MAX_CELLS) {
    out.push(...midA.map((l) => `- ${l}`), ...midB.map((l) => `+ ${l}`));
  } else {
    // lcs[i][j] = length of the LCS of midA[i..] and midB[j..]
    const n = midA.length;
    const m = midB.length;
    const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
    for (let i = n - 1; i >= 0; i--)
      for (let j = m - 1; j >= 0; j--)
        (lcs[i] as Uint32Array)[j] =
          midA[i] === midB[j]
            ? ((lcs[i + 1] as Uint32Array)[j + 1] as number) + 1
            : Math.max((lcs[i + 1] as Uint32Array)[j] as number, (lcs[i] as Uint32Array)[j + 1] as number);
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && midA[i] === midB[j]) {
        out.push(`  ${midA[i]}`);
        i++;
        j++;
      } else if (i < n && (j === m || ((lcs[i + 1] as Uint32Array)[j] as number) >= ((lcs[i] as Uint32Array)[j + 1] as number))) {
        out.push(`- ${midA[i]}`); // removals before additions, as diff(1) shows them
        i++;
      } else {
        out.push(`+ ${midB[j]}`);
        j++;
      }
    }
  }
  out.push(...a.slice(endA).map((l) => `  ${l}`));
  return `${out.join('\n')}\n`;
}
