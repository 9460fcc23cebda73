import { EffectivePolicyV1, type Policy } from '@novamesh/contracts';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { computeEffective } from './effective';
import { validatePolicy } from './validate';

const p = (input: Record<string, unknown>): Policy => {
  const r = validatePolicy(input);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.policy;
};
const mtls = (name: string, serviceName: string, mode: string) => p({ kind: 'MutualTLSPolicy', name, serviceName, mode });
const authz = (name: string, serviceName: string, action: string, extra: Record<string, unknown> = {}) =>
  p({ kind: 'AuthorizationPolicy', name, serviceName, action, rules: [{}], ...extra });
const traffic = (name: string, serviceName: string) => p({ kind: 'TrafficPolicy', name, serviceName, loadBalancing: 'random' });
const routes = (name: string, serviceName: string) => p({ kind: 'RouteRule', name, serviceName, routes: [{}] });
const limits = (name: string, serviceName: string) =>
  p({ kind: 'RateLimitPolicy', name, serviceName, limits: [{ name: 'all', requests: 10, per: 'second' }] });

describe('computeEffective', () => {
  it('defaults: no policies → permissive mTLS, ALLOW, nothing else', () => {
    expect(computeEffective('payment', [])).toEqual({
      service: 'payment',
      traffic: null,
      routes: [],
      rateLimits: [],
      authorization: { defaultAction: 'ALLOW', policies: [] },
      mtls: { mode: 'permissive', source: null },
      sources: [],
    });
  });

  it("a service's mTLS policy overrides the mesh-wide one; other services get the mesh-wide mode", () => {
    const stored = [
      { policy: mtls('mesh', '*', 'strict'), revision: 3 },
      { policy: mtls('legacy-plain', 'legacy', 'permissive'), revision: 7 },
    ];
    expect(computeEffective('legacy', stored).mtls).toEqual({ mode: 'permissive', source: 'MutualTLSPolicy.legacy-plain' });
    expect(computeEffective('legacy', stored).sources).toEqual([{ kind: 'MutualTLSPolicy', name: 'legacy-plain', revision: 7 }]);
    expect(computeEffective('payment', stored).mtls).toEqual({ mode: 'strict', source: 'MutualTLSPolicy.mesh' });
  });

  it('merges mesh-wide and service authorization policies, mesh-wide first, each by name', () => {
    const stored = [
      { policy: authz('z-allow-shop', 'payment', 'ALLOW'), revision: 4 },
      { policy: authz('deny-sandbox', '*', 'DENY'), revision: 2 },
      { policy: authz('a-audit', 'payment', 'AUDIT'), revision: 5 },
      { policy: authz('other', 'cart', 'ALLOW'), revision: 6 },
    ];
    const e = computeEffective('payment', stored);
    expect(e.authorization.policies.map((x) => x.name)).toEqual(['deny-sandbox', 'a-audit', 'z-allow-shop']);
    // an ALLOW policy applies and nobody set a default: deny what it does not allow (Istio semantics)
    expect(e.authorization.defaultAction).toBe('DENY');
    expect(computeEffective('cart', stored.slice(1, 2)).authorization.defaultAction).toBe('ALLOW');
  });

  it("an explicit defaultAction decides; the service's wins over the mesh-wide one, DENY on disagreement", () => {
    const meshAllow = { policy: authz('mesh', '*', 'DENY', { defaultAction: 'ALLOW' }), revision: 1 };
    const svcDeny = { policy: authz('svc', 'payment', 'AUDIT', { defaultAction: 'DENY' }), revision: 2 };
    const svcAllow = { policy: authz('svc2', 'payment', 'ALLOW', { defaultAction: 'ALLOW' }), revision: 3 };
    expect(computeEffective('payment', [meshAllow]).authorization.defaultAction).toBe('ALLOW');
    expect(computeEffective('payment', [meshAllow, svcDeny]).authorization.defaultAction).toBe('DENY');
    expect(computeEffective('payment', [meshAllow, svcAllow]).authorization.defaultAction).toBe('ALLOW');
    expect(computeEffective('payment', [meshAllow, svcAllow, svcDeny]).authorization.defaultAction).toBe('DENY');
  });

  it('picks the most recently revised TrafficPolicy when several target the service', () => {
    const e = computeEffective('payment', [
      { policy: traffic('b-new', 'payment'), revision: 9 },
      { policy: traffic('a-old', 'payment'), revision: 4 },
    ]);
    expect(e.traffic?.name).toBe('b-new');
    expect(e.sources).toEqual([{ kind: 'TrafficPolicy', name: 'b-new', revision: 9 }]);
  });

  it('lists every contributing policy in sources, by kind then name, and nothing of other services', () => {
    const stored = [
      { policy: limits('limits', 'payment'), revision: 11 },
      { policy: routes('r-b', 'payment'), revision: 12 },
      { policy: routes('r-a', 'payment'), revision: 13 },
      { policy: routes('r-cart', 'cart'), revision: 14 },
      { policy: traffic('t', 'payment'), revision: 15 },
      { policy: mtls('m', '*', 'strict'), revision: 16 },
      { policy: authz('deny', '*', 'DENY'), revision: 17 },
    ];
    const e = computeEffective('payment', stored);
    expect(e.routes.map((r) => r.name)).toEqual(['r-a', 'r-b']);
    expect(e.rateLimits.map((r) => r.name)).toEqual(['limits']);
    expect(e.sources).toEqual([
      { kind: 'TrafficPolicy', name: 't', revision: 15 },
      { kind: 'RouteRule', name: 'r-a', revision: 13 },
      { kind: 'RouteRule', name: 'r-b', revision: 12 },
      { kind: 'RateLimitPolicy', name: 'limits', revision: 11 },
      { kind: 'AuthorizationPolicy', name: 'deny', revision: 17 },
      { kind: 'MutualTLSPolicy', name: 'm', revision: 16 },
    ]);
    // what it computes is a valid EffectivePolicyV1 once the publisher adds revision and time
    expect(EffectivePolicyV1.parse({ ...e, revision: 1, updatedAt: '2025-01-01T00:00:00.000Z' })).toEqual({
      ...e,
      revision: 1,
      updatedAt: '2025-01-01T00:00:00.000Z',
    });
  });

  it('is deterministic: any order of the stored policies gives the same result', () => {
    const stored = [
      { policy: traffic('t1', 'payment'), revision: 5 },
      { policy: traffic('t2', 'payment'), revision: 5 },
      { policy: routes('r1', 'payment'), revision: 2 },
      { policy: routes('r2', 'payment'), revision: 3 },
      { policy: authz('a1', 'payment', 'ALLOW'), revision: 4 },
      { policy: authz('a2', '*', 'DENY'), revision: 6 },
      { policy: mtls('m1', '*', 'strict'), revision: 7 },
      { policy: mtls('m2', '*', 'disable'), revision: 7 },
      { policy: limits('l1', 'payment'), revision: 8 },
    ];
    const expected = computeEffective('payment', stored);
    expect(expected.traffic?.name).toBe('t1'); // same revision: by name
    fc.assert(
      fc.property(fc.shuffledSubarray(stored, { minLength: stored.length }), (shuffled) => {
        expect(computeEffective('payment', shuffled)).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });
});

describe('bring-your-own certificates', () => {
  it('pass from a service MutualTLSPolicy into the effective mTLS, and are refused mesh-wide or relative', () => {
    const ok = validatePolicy({
      kind: 'MutualTLSPolicy',
      name: 'byo',
      serviceName: 'payment',
      mode: 'strict',
      certificates: { certPath: '/etc/c.pem', keyPath: '/etc/k.pem', caPath: '/etc/ca.pem' },
    });
    expect(ok.ok).toBe(true);
    if (!ok.ok) return;
    expect(computeEffective('payment', [{ policy: ok.policy, revision: 3 }]).mtls).toEqual({
      mode: 'strict',
      source: 'MutualTLSPolicy.byo',
      certificates: { certPath: '/etc/c.pem', keyPath: '/etc/k.pem', caPath: '/etc/ca.pem' },
    });
    const meshWide = validatePolicy({
      kind: 'MutualTLSPolicy',
      name: 'byo',
      serviceName: '*',
      mode: 'strict',
      certificates: { certPath: '/etc/c.pem', keyPath: '/etc/k.pem', caPath: '/etc/ca.pem' },
    });
    expect(meshWide.ok ? [] : meshWide.issues.map((i) => i.path)).toEqual(['certificates']);
  });
});
