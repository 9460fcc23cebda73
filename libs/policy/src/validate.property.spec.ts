import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsePolicyDocuments } from './documents';
import { INVALID_POLICIES } from './invalid-policies';
import { type ValidationResult, validatePolicy } from './validate';

const dir = join(__dirname, '__fixtures__', 'valid');
const fixtures: unknown[] = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .flatMap((f) => parsePolicyDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => d.value));

/** Every [container, key] in a value, for picking a spot to mutate. */
function spots(v: unknown, out: [Record<string, unknown> | unknown[], string | number][] = []) {
  if (Array.isArray(v))
    v.forEach((c, i) => {
      out.push([v, i]);
      spots(c, out);
    });
  else if (typeof v === 'object' && v !== null)
    for (const [k, c] of Object.entries(v)) {
      out.push([v as Record<string, unknown>, k]);
      spots(c, out);
    }
  return out;
}

/** Values a user (or a fuzzer) might put anywhere. */
const nasty = fc.oneof(
  fc.anything(),
  fc.constantFrom('', '5s', '-1s', '1e9', 'NaN', '(a+)+', '(', '*', '/', 'spiffe://td/ns/x/*', 'GET', 'ring-hash', '100', 'true'),
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 100, 101, 65536, Number.MAX_SAFE_INTEGER, Number.NaN, Number.POSITIVE_INFINITY, 1e300),
);

const mutation = fc.record({
  doc: fc.constantFrom(...fixtures, ...INVALID_POLICIES.map((c) => c.policy)),
  ops: fc.array(
    fc.record({ at: fc.nat(), op: fc.constantFrom('delete', 'replace', 'add'), key: fc.string({ maxLength: 12 }), value: nasty }),
    {
      minLength: 1,
      maxLength: 4,
    },
  ),
});

function mutate({ doc, ops }: { doc: unknown; ops: { at: number; op: string; key: string; value: unknown }[] }): unknown {
  const copy = structuredClone(doc);
  for (const { at, op, key, value } of ops) {
    const all = spots(copy);
    if (all.length === 0) return value;
    const [parent, k] = all[at % all.length] as [Record<string, unknown> | unknown[], string | number];
    if (op === 'delete') {
      if (Array.isArray(parent)) parent.splice(k as number, 1);
      else delete parent[k as string];
    } else if (op === 'add' && !Array.isArray(parent))
      Object.defineProperty(parent, key, { value, enumerable: true, configurable: true, writable: true });
    else (parent as Record<string | number, unknown>)[k] = value;
  }
  return copy;
}

function checkResult(r: ValidationResult): void {
  if (r.ok) {
    expect(Array.isArray(r.warnings)).toBe(true);
    for (const w of r.warnings) expect(typeof w.path === 'string' && typeof w.message === 'string' && w.message.length > 0).toBe(true);
    // what is accepted normalizes to itself
    expect(validatePolicy(r.policy)).toEqual(r);
    return;
  }
  expect(r.issues.length).toBeGreaterThan(0);
  for (const i of r.issues) {
    expect(typeof i.path).toBe('string');
    expect(typeof i.message).toBe('string');
    expect(i.message.trim().length).toBeGreaterThan(0);
    expect(i.message).not.toMatch(/invalid input|^invalid$|internal validation error/i);
  }
}

describe('validatePolicy on arbitrary input (property)', () => {
  it('never throws on anything, and every refusal explains itself', () => {
    fc.assert(
      fc.property(fc.anything({ withNullPrototype: true, withBoxedValues: true, withSparseArray: true, maxDepth: 6 }), (v) => {
        checkResult(validatePolicy(v));
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on mutated fixtures; refusals name a path and a helpful message; accepted output is stable', () => {
    let accepted = 0;
    fc.assert(
      fc.property(mutation, (m) => {
        const r = validatePolicy(mutate(m));
        if (r.ok) accepted++;
        checkResult(r);
      }),
      { numRuns: 3000 },
    );
    // the mutations explore both sides
    expect(accepted).toBeGreaterThan(50);
  });

  it('objects with the right kind and random fields get field-level issues', () => {
    const kinds = fc.constantFrom('TrafficPolicy', 'RouteRule', 'RateLimitPolicy', 'AuthorizationPolicy', 'MutualTLSPolicy');
    fc.assert(
      fc.property(kinds, fc.dictionary(fc.string({ maxLength: 10 }), nasty, { maxKeys: 6 }), (kind, rest) => {
        const r = validatePolicy({ ...rest, kind });
        checkResult(r);
        if (!r.ok) for (const i of r.issues) expect(i.path, i.message).not.toBe('');
      }),
      { numRuns: 2000 },
    );
  });
});
