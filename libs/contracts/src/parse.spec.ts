import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lastToken, subjects } from './names';
import { appendJsonMembers } from './parse';

describe('appendJsonMembers', () => {
  it('is JSON.stringify of the object with the members added, for any object and new members', () => {
    const member = fc.oneof(fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }));
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.jsonValue(), { minKeys: 1 }),
        fc.dictionary(fc.string(), member, { maxKeys: 4 }),
        (object, extra) => {
          // Integer-like keys are the exception: a JavaScript object lists them first.
          const named = ([k]: [string, unknown]) => !(k in object) && k !== '__proto__' && !/^(0|[1-9]\d*)$/.test(k);
          const members = Object.fromEntries(Object.entries(extra).filter(named));
          const expected = JSON.stringify({ ...object, ...members });
          expect(appendJsonMembers(JSON.stringify(object), members)).toBe(expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses what is not the JSON of an object with members', () => {
    for (const bad of ['{}', '[]', '"x"', '', '{"a":1']) expect(() => appendJsonMembers(bad, { v: 1 })).toThrow(RangeError);
  });
});

describe('lastToken', () => {
  it('gives the service of a per-service subject', () => {
    expect(lastToken(subjects.proxyConfig('cart-api'))).toBe('cart-api');
    expect(lastToken(subjects.effectivePolicy('web'))).toBe('web');
    expect(lastToken('single')).toBe('single');
  });
});
