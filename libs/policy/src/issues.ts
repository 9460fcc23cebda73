import { capIssues, describeValue, formatPath, type Issue, meshErrorMap, normalizeSeedKey, UNKNOWN_FIELD } from '@novamesh/contracts';
import type { z } from 'zod';

/** An issue with a stable code, for analyze findings. */
export interface CodedIssue extends Issue {
  code: string;
}

/** The error map policy validation parses with: the mesh's own (`meshErrorMap` of @novamesh/contracts). */
export const policyErrorMap = meshErrorMap;
export { describeValue, formatPath };

function closest(key: string, allowed: string[]): string | undefined {
  const k = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(key.length / 3)) + 1;
  for (const a of allowed) {
    const d = a.toLowerCase() === k ? 0 : levenshtein(k, a.toLowerCase(), bestDistance);
    if (d < bestDistance) [best, bestDistance] = [a, d];
  }
  return best;
}

/** Edit distance counting a swap of neighbours as one edit (optimal string alignment). */
function levenshtein(a: string, b: string, cap: number): number {
  if (Math.abs(a.length - b.length) >= cap || a.length > 64 || b.length > 64) return cap;
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number) => (d[i] as number[])[j] as number;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      let v = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, at(i - 2, j - 2) + 1);
      (d[i] as number[])[j] = v;
    }
  return at(a.length, b.length);
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Maps a path in the parsed (normalized) value back to the input the user wrote: a seed key
 * (`max_connections`) is named as written, and a path into a value given in string form
 * (`loadBalancing: "fastest"`) stops at that value.
 */
export function inputPath(raw: unknown, path: readonly PropertyKey[]): PropertyKey[] {
  const out: PropertyKey[] = [];
  let cur: unknown = raw;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i] as PropertyKey;
    if (cur === undefined) return [...out, ...path.slice(i)];
    if (Array.isArray(cur)) {
      out.push(seg);
      cur = typeof seg === 'number' ? cur[seg] : undefined;
      continue;
    }
    if (!isRecord(cur)) return out;
    let key: PropertyKey = seg;
    if (typeof seg === 'string' && !Object.hasOwn(cur, seg)) key = Object.keys(cur).find((k) => normalizeSeedKey(k) === seg) ?? seg;
    out.push(key);
    cur = typeof key === 'string' && Object.hasOwn(cur, key) ? cur[key] : undefined;
  }
  return out;
}

const truncate = (s: string, n = 80) => (s.length > n ? `${s.slice(0, n)}…` : s);

/** Turns zod's issues into policy issues: paths as the user wrote them, one issue per unknown field. */
export function toPolicyIssues(issues: readonly z.core.$ZodIssue[], raw: unknown): Issue[] {
  const out: Issue[] = [];
  for (const iss of issues) {
    const path = inputPath(raw, iss.path);
    if (iss.code === 'unrecognized_keys') {
      let allowed: string[] = [];
      if (iss.message.startsWith(UNKNOWN_FIELD)) allowed = JSON.parse(iss.message.slice(UNKNOWN_FIELD.length)) as string[];
      for (const key of iss.keys) {
        const full = inputPath(raw, [...iss.path, key]);
        const written = String(full[full.length - 1] ?? key);
        const guess = closest(written, allowed) ?? closest(key, allowed);
        out.push({
          path: formatPath(full),
          message: `unknown field "${truncate(written)}"${guess ? ` (did you mean "${guess}"?)` : ''}${allowed.length ? `; allowed fields: ${allowed.join(', ')}` : ''}`,
        });
      }
      continue;
    }
    let message = iss.message || 'is not valid';
    // schema-set messages do not say what was received; add it for simple values
    const input = (iss as { input?: unknown }).input;
    if (
      !message.includes('received') &&
      (typeof input === 'string' || typeof input === 'number' || typeof input === 'boolean') &&
      !message.includes(String(input))
    )
      message += ` (received ${describeValue(input)})`;
    out.push({ path: formatPath(path), message });
  }
  return capIssues(out);
}
