import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { MeshValidationError } from './errors';
import { lastToken, subjects } from './names';
import { appendJsonMembers, decodeRegistryEvent, validate } from './parse';
import { ProxyAckV1 } from './proxy';

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

describe('refusal messages of mesh input', () => {
  const issuesOf = (subject: string, body: unknown) => {
    try {
      decodeRegistryEvent(subject, new TextEncoder().encode(JSON.stringify(body)));
    } catch (e) {
      return (e as MeshValidationError).issues;
    }
    throw new Error('accepted');
  };
  const service = { name: 'payment', type: 'http', port: 8080, endpoints: [] };

  it('say what is wrong in words, not in the parser’s: a missing field, an unknown one, a bad record key, a bound', () => {
    expect(issuesOf('mesh.v1.registry.payment.heartbeat', {})).toEqual([{ path: 'service', message: 'is required (must be a string)' }]);
    expect(issuesOf('mesh.v1.registry.payment.register', { ...service, bogus: 1, extra: 2 })).toEqual([
      { path: 'bogus', message: expect.stringMatching(/^unknown field; allowed fields: name, type, virtualIP, port, endpoints,/) },
      { path: 'extra', message: expect.stringMatching(/^unknown field; allowed fields: /) },
    ]);
    const labels = { 'a b': 'x' };
    const endpoint = { id: 'e1', address: '10.0.0.1', port: 8080, weight: 1, healthy: true, labels };
    expect(issuesOf('mesh.v1.registry.payment.register', { ...service, endpoints: [endpoint] })).toEqual([
      { path: 'endpoints[0].labels["a b"]', message: expect.stringMatching(/^is not an allowed key: label keys are /) },
    ]);
    expect(() =>
      validate(ProxyAckV1, { service: 'web', sidecar: 'w1', version: -1, hash: '', sentAt: new Date().toISOString() }, 'ack'),
    ).toThrow('version: must be at least 0 (received -1)');
    const escapes = { ...endpoint, labels: { v: '\u001b]0;pwned\u0007\u001b[31mred' } };
    expect(issuesOf('mesh.v1.registry.payment.register', { ...service, endpoints: [escapes] })).toEqual([
      { path: 'endpoints[0].labels.v', message: 'label values must not contain control characters (newlines, escape sequences)' },
    ]);
    const rejected = { version: -5, hash: '', reason: 'no' };
    expect(() =>
      validate(ProxyAckV1, { service: 'web', sidecar: 'w1', version: 1, hash: '', sentAt: new Date().toISOString(), rejected }, 'ack'),
    ).toThrow('rejected.version: must be at least 0 (received -5)');
  });
});

describe('refusals of huge input', () => {
  it('stay small: unknown fields folded into one issue, at most 100 issues, a message of at most 4 KiB', () => {
    const junk = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`a${i}`, 0]));
    let err: MeshValidationError | undefined;
    try {
      decodeRegistryEvent(
        'mesh.v1.registry.payment.register',
        new TextEncoder().encode(JSON.stringify({ name: 'payment', type: 'http', port: 1, ...junk })),
      );
    } catch (e) {
      err = e as MeshValidationError;
    }
    expect(err?.issues).toEqual([
      {
        path: '',
        message: expect.stringMatching(/^unknown fields "a0", "a1", "a2", "a3", "a4" … \(10000 in all\); allowed fields: name,/),
      },
    ]);
    const many = Array.from({ length: 300 }, (_, i) => ({
      id: `e${i}`,
      address: '0.0.0.0',
      port: 1,
      weight: 1,
      healthy: true,
      labels: {},
    }));
    try {
      decodeRegistryEvent(
        'mesh.v1.registry.payment.register',
        new TextEncoder().encode(JSON.stringify({ name: 'payment', type: 'http', port: 1, endpoints: many })),
      );
    } catch (e) {
      err = e as MeshValidationError;
    }
    expect(err?.issues).toHaveLength(101);
    expect(err?.issues.at(-1)).toEqual({ path: '', message: '… and 200 more problems' });
    expect(err?.message.length).toBeLessThan(4_200);
    expect(err?.message).toMatch(/… \(101 problems in all\)$/);
  });
});
