import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from './duration';
import { assertSubjectToken, parseRegistrySubject, subjects } from './names';

describe('durations', () => {
  it.each([
    ['250ms', 250],
    ['5s', 5000],
    ['1.5s', 1500],
    ['1m', 60_000],
    ['2h', 7_200_000],
    ['300', 300],
    [42, 42],
  ])('parses %s', (input, ms) => expect(parseDuration(input)).toBe(ms));

  it.each(['', 'soon', '5 s', '-1s', '1d', {}, null, -5, Number.NaN])('refuses %s', (input) =>
    expect(parseDuration(input)).toBeUndefined(),
  );

  it('round-trips through formatDuration', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 86_400_000 }), (ms) => parseDuration(formatDuration(ms)) === ms));
  });
});

describe('subjects', () => {
  it('builds and parses registry subjects', () => {
    expect(subjects.registry('payment', 'endpoint.add')).toBe('mesh.v1.registry.payment.endpoint.add');
    expect(parseRegistrySubject('mesh.v1.registry.payment.endpoint.add')).toEqual({ service: 'payment', action: 'endpoint.add' });
    expect(parseRegistrySubject('mesh.v1.registry.payment.nope')).toBeUndefined();
    expect(parseRegistrySubject('mesh.v1.discovery.endpoints.payment')).toBeUndefined();
  });

  it('refuses tokens that would break the subject tree', () => {
    for (const bad of ['a.b', '*', '>', 'A', '', 'a b', '-a']) expect(() => assertSubjectToken(bad)).toThrow(/not valid/);
  });

  it('names dead letters of unknown services "_"', () => {
    expect(subjects.deadLetter('registry', 'Bad.Name')).toBe('mesh.v1.deadletter.registry._');
  });
});
