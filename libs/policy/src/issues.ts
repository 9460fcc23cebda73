import { type Issue, normalizeSeedKey } from '@novamesh/contracts';
import type { z } from 'zod';

/** Most issues reported for one input; a garbage document should not produce a megabyte of them. */
export const MAX_ISSUES = 100;

/** An issue with a stable code, for analyze findings. */
export interface CodedIssue extends Issue {
  code: string;
}

const MAX_SHOWN = 60;

/** A short, readable rendering of a received value: `"abc"`, `42`, `a list of 3 items`. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > MAX_SHOWN ? `${v.slice(0, MAX_SHOWN)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (Array.isArray(v)) return `a list of ${v.length} item${v.length === 1 ? '' : 's'}`;
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

const EXPECTED: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'an object',
  record: 'an object',
  array: 'a list',
  tuple: 'a list',
  null: 'null',
  undefined: 'nothing',
  bigint: 'a number',
  date: 'a date',
  never: 'nothing (this field is not allowed)',
};

const quote = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : String(v));
const oneOf = (values: readonly unknown[]) =>
  values.length === 1 ? `must be ${quote(values[0])}` : `must be one of ${values.map(quote).join(', ')}`;
const size = (origin: string, n: number | bigint, unit: 'item' | 'character') =>
  `${n} ${unit}${Number(n) === 1 ? '' : 's'}${origin === 'set' ? ' (unique)' : ''}`;

function received(input: unknown, origin?: string): string {
  if (origin === 'string' && typeof input === 'string') return ` (received ${input.length} characters)`;
  if ((origin === 'array' || origin === 'set') && Array.isArray(input)) return ` (received ${input.length})`;
  return input === undefined ? '' : ` (received ${describeValue(input)})`;
}

/**
 * `routes[2].match.headers.x-env.regex`; a key that is empty or holds a dot, bracket, quote or
 * space is written `["a key"]` so the path stays unambiguous.
 */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (typeof p === 'string' && /^[^.[\]\s"]+$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(String(p))}]`;
  }
  return out;
}

const UNKNOWN_FIELD = 'unknown field; allowed: ';

/**
 * The per-parse zod error map of policy validation: every message says what was expected and,
 * where useful, what was received. Messages set by the schemas themselves take precedence.
 */
export function policyErrorMap(iss: z.core.$ZodRawIssue): string {
  switch (iss.code) {
    case 'invalid_type': {
      const expected = EXPECTED[iss.expected] ?? iss.expected;
      if (iss.input === undefined) return `is required (expected ${expected})`;
      return `expected ${expected}, received ${describeValue(iss.input)}`;
    }
    case 'invalid_value':
      if (iss.input === undefined) return `is required (${oneOf(iss.values).replace('must be ', '')})`;
      return `${oneOf(iss.values)}${received(iss.input)}`;
    case 'too_small': {
      const { origin, minimum: min, inclusive } = iss;
      if (origin === 'string')
        return `${Number(min) === 1 ? 'must not be empty' : `must be at least ${size(origin, min, 'character')}`}${received(iss.input, origin)}`;
      if (origin === 'array' || origin === 'set')
        return `${Number(min) === 1 ? 'must not be empty' : `must have at least ${size(origin, min, 'item')}`}${received(iss.input, origin)}`;
      return `must be ${inclusive === false ? 'greater than' : 'at least'} ${min}${received(iss.input)}`;
    }
    case 'too_big': {
      const { origin, maximum: max, inclusive } = iss;
      if (origin === 'string') return `must be at most ${size(origin, max, 'character')}${received(iss.input, origin)}`;
      if (origin === 'array' || origin === 'set') return `must have at most ${size(origin, max, 'item')}${received(iss.input, origin)}`;
      return `must be ${inclusive === false ? 'less than' : 'at most'} ${max}${received(iss.input)}`;
    }
    case 'invalid_format': {
      const f = iss as typeof iss & { prefix?: string; suffix?: string; includes?: string };
      const what =
        f.format === 'regex'
          ? `must match ${f.pattern}`
          : f.format === 'starts_with'
            ? `must start with ${quote(f.prefix)}`
            : f.format === 'ends_with'
              ? `must end with ${quote(f.suffix)}`
              : f.format === 'includes'
                ? `must include ${quote(f.includes)}`
                : `must be a valid ${f.format}`;
      return `${what}${received(iss.input)}`;
    }
    case 'not_multiple_of':
      return `must be a multiple of ${iss.divisor}${received(iss.input)}`;
    case 'unrecognized_keys': {
      const def = (iss.inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def;
      return `${UNKNOWN_FIELD}${JSON.stringify(Object.keys(def?.shape ?? {}))}`;
    }
    case 'invalid_union': {
      const options = (iss as { options?: unknown }).options;
      if (iss.discriminator !== undefined && Array.isArray(options)) {
        const value =
          typeof iss.input === 'object' && iss.input !== null ? (iss.input as Record<string, unknown>)[iss.discriminator] : undefined;
        return value === undefined ? `is required (${oneOf(options).replace('must be ', '')})` : `${oneOf(options)}${received(value)}`;
      }
      const branches = iss.errors
        .map((errs) => errs.map((e) => `${formatPath(e.path) || 'value'}: ${e.message}`).join(', '))
        .filter(Boolean);
      return `does not match any allowed form${branches.length ? ` (${branches.join('; or ')})` : ''}${received(iss.input)}`;
    }
    case 'invalid_key':
      return `is not an allowed key: ${iss.issues.map((i) => i.message).join('; ') || 'invalid'}`;
    case 'invalid_element':
      return `has an invalid element: ${iss.issues.map((i) => i.message).join('; ') || 'invalid'}`;
    default:
      return typeof iss.message === 'string' && iss.message && iss.message !== 'Invalid input' ? iss.message : 'is not valid';
  }
}

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
  if (out.length > MAX_ISSUES) {
    const more = out.length - MAX_ISSUES;
    out.length = MAX_ISSUES;
    out.push({ path: '', message: `… and ${more} more problem${more === 1 ? '' : 's'}` });
  }
  return out;
}
