import type { z } from 'zod';

// The mesh's zod error map: what every refusal of input (registry events, requests, policies,
// acknowledgements) says, in words a person would use, with what was received.

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

/** How the error map writes an unknown field's message: the allowed fields follow as JSON (see {@link unknownFieldIssues}). */
export const UNKNOWN_FIELD = 'unknown field; allowed: ';

/**
 * The per-parse zod error map of mesh input: every message says what was expected and,
 * where useful, what was received. Messages set by the schemas themselves take precedence.
 */
export function meshErrorMap(iss: z.core.$ZodRawIssue): string {
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
