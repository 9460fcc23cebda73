import { type EffectivePolicyV1, type EndpointSetV1, NAMESPACE_LABEL, ProxySnapshotV1, type TrustBundleV1 } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { canaryRuleFixture, effectivePolicyFixture, endpointSetFixture, rateLimitFixture, trafficPolicyFixture } from './fixtures';
import { checkSnapshot } from './snapshot.check';
import { type CompileInput, CompileMemo, compileSnapshot, DEFAULT_INBOUND } from './snapshot.compiler';
import { hashSnapshot } from './snapshot.hash';

const bundle: TrustBundleV1 = {
  trustDomain: 'prod.example',
  roots: [{ pem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----', fingerprint256: 'ab', notAfter: '2035-01-01T00:00:00Z' }],
  updatedAt: '2025-01-01T00:00:00Z',
};

function input(
  service: string,
  sets: EndpointSetV1[],
  policies: EffectivePolicyV1[] = [],
  extra: Partial<CompileInput> = {},
): CompileInput {
  return {
    service,
    endpoints: new Map(sets.map((s) => [s.service, s])),
    policies: new Map(policies.map((p) => [p.service, p])),
    ...extra,
  };
}

describe('compileSnapshot', () => {
  it('gives a service without policy the defaults and every registered service as upstream, itself included', () => {
    const sets = [endpointSetFixture('web'), endpointSetFixture('cart'), endpointSetFixture('gone', { deregistered: true })];
    const { content, diagnostics } = compileSnapshot(input('web', sets));
    expect(content.inbound).toEqual(DEFAULT_INBOUND);
    expect(content.inbound).toEqual({
      mtls: { mode: 'permissive' },
      authorization: { defaultAction: 'ALLOW', policies: [] },
      rateLimits: [],
    });
    expect(content.upstreams.map((u) => u.service)).toEqual(['cart', 'web']);
    expect(content.trust).toBeUndefined();
    expect(diagnostics).toEqual({ missing: [], warnings: [] });
    const cart = content.upstreams[0];
    expect(cart).toMatchObject({
      type: 'http',
      port: 8080,
      identity: 'spiffe://novamesh.local/ns/default/svc/cart',
      mtls: 'permissive',
      loadBalancing: { algorithm: 'round-robin' },
      subsets: [],
      routes: [],
      endpointsRevision: 1,
    });
    expect(cart?.endpoints.map((e) => e.id)).toEqual(['cart-1', 'cart-2']);
    expect(cart).not.toHaveProperty('circuitBreaking');
  });

  it('limits upstreams to the declared ones and lists those not registered as missing', () => {
    const sets = [
      endpointSetFixture('web', { upstreams: ['cart', 'ghost', 'cart'] }),
      endpointSetFixture('cart'),
      endpointSetFixture('stock'),
    ];
    const { content, diagnostics } = compileSnapshot(input('web', sets));
    expect(content.upstreams.map((u) => u.service)).toEqual(['cart']);
    expect(diagnostics.missing).toEqual(['ghost']);
    const none = compileSnapshot(input('web', [endpointSetFixture('web', { upstreams: [] }), endpointSetFixture('cart')]));
    expect(none.content.upstreams).toEqual([]);
  });

  it("builds the inbound side from the service's effective policy", () => {
    const policy = effectivePolicyFixture('web', {
      mtls: { mode: 'strict', source: 'MutualTLSPolicy.web', certificates: { certPath: '/c.pem', keyPath: '/k.pem', caPath: '/ca.pem' } },
      authorization: {
        defaultAction: 'DENY',
        policies: [{ kind: 'AuthorizationPolicy', name: 'allow-shop', serviceName: 'web', action: 'ALLOW', rules: [] }],
      },
      rateLimits: [rateLimitFixture('web')],
    });
    const { content } = compileSnapshot(input('web', [endpointSetFixture('web')], [policy]));
    expect(content.inbound).toEqual({
      mtls: { mode: 'strict', certificates: { certPath: '/c.pem', keyPath: '/k.pem', caPath: '/ca.pem' } },
      authorization: policy.authorization,
      rateLimits: policy.rateLimits,
    });
  });

  it("takes an upstream's traffic policy, mTLS mode, subsets and routes (in rule order, with the rule name)", () => {
    const cart = effectivePolicyFixture('cart', {
      traffic: trafficPolicyFixture('cart'),
      routes: [
        canaryRuleFixture('cart', 'a-canary'),
        { ...canaryRuleFixture('cart', 'b-more'), subsets: [{ name: 'v3', labels: { version: 'v3' } }] },
      ],
      mtls: { mode: 'strict', source: 'MutualTLSPolicy.mesh' },
    });
    const b = cart.routes[1];
    if (b) b.routes = [{ name: 'to-v3', match: { path: { prefix: '/v3' } }, split: [{ subset: 'v3', weight: 100 }] }];
    const { content } = compileSnapshot(
      input('web', [endpointSetFixture('web', { upstreams: ['cart'] }), endpointSetFixture('cart')], [cart]),
    );
    const up = content.upstreams[0];
    expect(up?.mtls).toBe('strict');
    expect(up?.loadBalancing).toEqual({ algorithm: 'least-request', choiceCount: 2 });
    expect(up?.circuitBreaking).toEqual({ maxConnections: 100, maxPendingRequests: 10 });
    expect(up?.timeouts).toEqual({ request: 2_000 });
    expect(up?.retries).toMatchObject({ attempts: 2, perTryTimeout: 500 });
    expect(up?.subsets.map((s) => s.name)).toEqual(['v1', 'v2', 'v3']);
    expect(up?.routes.map((r) => [r.rule, r.name])).toEqual([
      ['a-canary', 'canary'],
      ['b-more', 'to-v3'],
    ]);
    expect(checkSnapshot(content)).toEqual([]);
  });

  it('reports two rules defining one subset differently, keeping the first', () => {
    const conflicting = { ...canaryRuleFixture('cart', 'b-rule'), subsets: [{ name: 'v2', labels: { version: 'v9' } }] };
    conflicting.routes = [{ match: {}, split: [{ subset: 'v2', weight: 100 }] }];
    const same = canaryRuleFixture('cart', 'c-same');
    const cart = effectivePolicyFixture('cart', { routes: [canaryRuleFixture('cart', 'a-rule'), conflicting, same] });
    const { content, diagnostics } = compileSnapshot(input('web', [endpointSetFixture('web'), endpointSetFixture('cart')], [cart]));
    expect(content.upstreams.find((u) => u.service === 'cart')?.subsets).toEqual([
      { name: 'v1', labels: { version: 'v1' } },
      { name: 'v2', labels: { version: 'v2' } },
    ]);
    expect(diagnostics.warnings).toEqual([
      {
        path: 'upstreams.cart.subsets.v2',
        message: 'RouteRules "a-rule" and "b-rule" define subset "v2" differently; "a-rule" (first in rule order) is used',
      },
    ]);
  });

  it("names identities after the endpoints' namespace and the bundle's trust domain, and carries the trust section", () => {
    const sets = [endpointSetFixture('web'), endpointSetFixture('cart', { namespace: 'shop' })];
    const { content } = compileSnapshot(
      input('web', sets, [], { bundle, revoked: { serials: ['AB:CD', '01', 'abcd'], updatedAt: '2025-01-01T00:00:00Z' } }),
    );
    expect(content.upstreams.map((u) => u.identity)).toEqual([
      'spiffe://prod.example/ns/shop/svc/cart',
      'spiffe://prod.example/ns/default/svc/web',
    ]);
    expect(content.trust).toEqual({ trustDomain: 'prod.example', roots: [bundle.roots[0]?.pem], revokedSerials: ['01', 'abcd'] });
  });

  it('warns when endpoints disagree on their namespace', () => {
    const cart = endpointSetFixture('cart', { namespace: 'shop' });
    const [first, second] = cart.endpoints;
    if (second) second.labels = { ...second.labels, [NAMESPACE_LABEL]: 'other' };
    const { content, diagnostics } = compileSnapshot(input('cart', [{ ...cart, endpoints: [second!, first!] }]));
    expect(content.upstreams[0]?.identity).toBe('spiffe://novamesh.local/ns/shop/svc/cart');
    expect(diagnostics.warnings[0]?.message).toMatch(/disagree/);
  });

  it('produces content that, with a version and time, is a valid ProxySnapshotV1', () => {
    const cart = effectivePolicyFixture('cart', { traffic: trafficPolicyFixture('cart'), routes: [canaryRuleFixture('cart')] });
    const { content, hash } = compileSnapshot(input('web', [endpointSetFixture('web'), endpointSetFixture('cart')], [cart], { bundle }));
    const snapshot = { ...content, version: 1, hash, createdAt: new Date(0).toISOString() };
    expect(ProxySnapshotV1.parse(snapshot)).toEqual(snapshot);
    expect(checkSnapshot(snapshot)).toEqual([]);
  });

  it('shares one inbound side between services whose effective policies say the same (a mesh-wide policy), serialized once', () => {
    const memo = new CompileMemo();
    const deny = { defaultAction: 'ALLOW' as const, policies: [] };
    const sets = ['a', 'b', 'c'].map((s) => endpointSetFixture(s, { upstreams: [] }));
    const policies = ['a', 'b', 'c'].map((s) => effectivePolicyFixture(s, { authorization: deny, revision: 7 }));
    const compiled = ['a', 'b', 'c'].map((s) => compileSnapshot(input(s, sets, policies), memo));
    expect(compiled[1]?.content.inbound).toBe(compiled[0]?.content.inbound);
    expect(compiled[2]?.content.inbound).toBe(compiled[0]?.content.inbound);
    expect(memo.inboundsByContent.size).toBe(1);
    for (const c of compiled) expect(c.hash).toBe(hashSnapshot(c.content));
    // A service whose inbound side differs gets its own.
    const own = effectivePolicyFixture('c', { authorization: { defaultAction: 'DENY', policies: [] }, revision: 8 });
    const c = compileSnapshot(input('c', sets, [...policies.slice(0, 2), own]), memo);
    expect(c.content.inbound.authorization.defaultAction).toBe('DENY');
    expect(memo.inboundsByContent.size).toBe(2);
  });
});
