import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical-json';

/** The definition, written plainly (the first implementation): keys sorted as strings, parts joined. */
function reference(v: unknown): string {
  const canon = (x: unknown): string | undefined => {
    if (x === undefined || typeof x === 'function' || typeof x === 'symbol') return undefined;
    if (x === null || typeof x !== 'object') return JSON.stringify(x);
    const withToJson = x as { toJSON?: () => unknown };
    if (typeof withToJson.toJSON === 'function') return canon(withToJson.toJSON());
    if (Array.isArray(x)) return `[${x.map((y) => canon(y) ?? 'null').join(',')}]`;
    const parts: string[] = [];
    for (const k of Object.keys(x).sort()) {
      const s = canon((x as Record<string, unknown>)[k]);
      if (s !== undefined) parts.push(`${JSON.stringify(k)}:${s}`);
    }
    return `{${parts.join(',')}}`;
  };
  return canon(v) ?? 'null';
}

describe('canonicalJson', () => {
  it('is JSON.stringify with sorted keys, for any JSON-like value', () => {
    const value = fc.anything({
      withNullPrototype: false,
      withBoxedValues: false,
      withSparseArray: false,
      withDate: true,
      values: [fc.string(), fc.double(), fc.integer(), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.constant(-0)],
    });
    fc.assert(
      fc.property(value, (v) => {
        expect(canonicalJson(v)).toBe(reference(v));
        // Parsing it back gives the same value again (keys already in order).
        const text = canonicalJson(v);
        expect(canonicalJson(JSON.parse(text))).toBe(text);
      }),
      { numRuns: 2_000 },
    );
  });

  it('sorts keys at every depth, leaves out undefined members and writes null for what JSON cannot hold', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, undefined, () => 1], c: 'x' }, u: undefined })).toBe(
      '{"a":{"c":"x","d":[3,null,null]},"b":1}',
    );
    expect(canonicalJson([Number.NaN, Number.POSITIVE_INFINITY, -0, 1e21])).toBe('[null,null,0,1e+21]');
    expect(canonicalJson(undefined)).toBe('null');
    expect(canonicalJson({ when: new Date(0) })).toBe('{"when":"1970-01-01T00:00:00.000Z"}');
    expect(canonicalJson({ é: 1, Z: 2, a: 3, '10': 4, '9': 5 })).toBe('{"10":4,"9":5,"Z":2,"a":3,"é":1}');
    expect(() => canonicalJson({ n: 1n })).toThrow(TypeError);
  });
});
