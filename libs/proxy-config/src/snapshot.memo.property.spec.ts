import {
  type EffectivePolicyV1,
  type EndpointSetV1,
  NAMESPACE_LABEL,
  type RevocationListV1,
  type TrustBundleV1,
} from '@novamesh/contracts';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical-json';
import { canaryRuleFixture, effectivePolicyFixture, endpointSetFixture, rateLimitFixture, trafficPolicyFixture } from './fixtures';
import { MeshView } from './mesh.view';
import { compileSnapshot } from './snapshot.compiler';
import { hashSnapshot, joinSnapshotJson, type SnapshotContent, snapshotMessageJson } from './snapshot.hash';

// The fast path — parts compiled once per input object (CompileMemo, used by MeshView) and the
// snapshot's canonical JSON joined from theirs — must give exactly what the definition gives:
// sidecars recompute `hashSnapshot` from the parsed snapshot and refuse a mismatch.

const NAMES = ['alpha', 'cart', 'shared', 'web', 'zeta'];
const name = fc.constantFrom(...NAMES);

const endpointsOp = fc.record({
  op: fc.constant('endpoints' as const),
  service: name,
  count: fc.integer({ min: 0, max: 3 }),
  upstreams: fc.option(fc.uniqueArray(fc.constantFrom(...NAMES, 'unregistered'), { maxLength: 4 }), { nil: undefined }),
  namespace: fc.constantFrom(undefined, 'shop', 'split'),
  port: fc.integer({ min: 1, max: 65_535 }),
  revision: fc.nat(),
  deregistered: fc.boolean(),
});
const policyOp = fc.record({
  op: fc.constant('policy' as const),
  service: name,
  traffic: fc.boolean(),
  timeoutMs: fc.integer({ min: 1, max: 60_000 }),
  canary: fc.constantFrom(0, 1, 2),
  rateLimits: fc.boolean(),
  strict: fc.boolean(),
  deny: fc.option(fc.string({ maxLength: 8 }), { nil: undefined }),
});
const bundleOp = fc.record({
  op: fc.constant('bundle' as const),
  trustDomain: fc.constantFrom('a.example', 'b.example'),
  roots: fc.nat(2),
});
const revokedOp = fc.record({
  op: fc.constant('revoked' as const),
  serials: fc.array(fc.constantFrom('0A', '0b', 'c:d', 'EF'), { maxLength: 3 }),
});
const ops = fc.array(fc.oneof(endpointsOp, endpointsOp, policyOp, policyOp, bundleOp, revokedOp), { minLength: 1, maxLength: 25 });

type Of<A> = A extends fc.Arbitrary<infer T> ? T : never;

function endpointSet(o: Of<typeof endpointsOp>): EndpointSetV1 {
  const set = endpointSetFixture(o.service, {
    count: o.count,
    port: o.port,
    revision: o.revision,
    deregistered: o.deregistered,
    ...(o.upstreams ? { upstreams: o.upstreams } : {}),
    ...(o.namespace === 'shop' ? { namespace: 'shop' } : {}),
  });
  // Endpoints disagreeing on their namespace: a warning the memo must repeat for every caller.
  if (o.namespace === 'split')
    set.endpoints.forEach((e, i) => {
      e.labels[NAMESPACE_LABEL] = `ns${i}`;
    });
  return set;
}

function policy(o: Of<typeof policyOp>): EffectivePolicyV1 {
  const traffic = { ...trafficPolicyFixture(o.service), timeouts: { request: o.timeoutMs } };
  const clash = canaryRuleFixture(o.service, `${o.service}-clash`);
  clash.subsets = [{ name: 'v1', labels: { version: 'other' } }];
  return effectivePolicyFixture(o.service, {
    ...(o.traffic ? { traffic } : {}),
    routes: o.canary === 0 ? [] : o.canary === 1 ? [canaryRuleFixture(o.service)] : [canaryRuleFixture(o.service), clash],
    rateLimits: o.rateLimits ? [rateLimitFixture(o.service)] : [],
    mtls: { mode: o.strict ? 'strict' : 'permissive', source: null },
    authorization: {
      defaultAction: 'ALLOW',
      policies: o.deny === undefined ? [] : [{ name: 'deny', action: 'DENY', rules: [{ from: { namespaces: [o.deny] } }] }],
    } as EffectivePolicyV1['authorization'],
  });
}

describe('memoized compile (MeshView)', () => {
  it('gives the same content, canonical JSON, hash and diagnostics as compiling from scratch, after any sequence of changes', () => {
    fc.assert(
      fc.property(ops, (sequence) => {
        const view = new MeshView();
        const endpoints = new Map<string, EndpointSetV1>();
        const policies = new Map<string, EffectivePolicyV1>();
        let bundle: TrustBundleV1 | undefined;
        let revoked: RevocationListV1 | undefined;
        for (const o of sequence) {
          if (o.op === 'endpoints') {
            const set = endpointSet(o);
            view.applyEndpoints(set);
            if (set.deregistered) endpoints.delete(set.service);
            else endpoints.set(set.service, set);
          } else if (o.op === 'policy') {
            const p = policy(o);
            view.applyPolicy(p);
            policies.set(p.service, p);
          } else if (o.op === 'bundle') {
            const roots = Array.from({ length: o.roots }, (_, i) => ({ pem: `PEM-${i}`, fingerprint256: `f${i}`, notAfter: 'n' }));
            bundle = { trustDomain: o.trustDomain, roots, updatedAt: 'u' };
            view.applyBundle(bundle);
          } else {
            revoked = { serials: o.serials, updatedAt: 'u' };
            view.applyRevocations(revoked);
          }
          // Every snapshot, after every change: most parts come from the memo by now.
          for (const service of view.services()) {
            const fast = view.compile(service);
            const slow = compileSnapshot({ service, endpoints, policies, ...(bundle ? { bundle } : {}), ...(revoked ? { revoked } : {}) });
            expect(fast).toBeDefined();
            if (!fast) continue;
            expect(fast.hash).toBe(hashSnapshot(fast.content));
            expect(fast.canonical).toBe(canonicalJson(fast.content));
            expect(JSON.parse(fast.canonical)).toEqual(JSON.parse(JSON.stringify(fast.content)));
            const meta = { version: 7, hash: fast.hash, createdAt: '2025-01-01T00:00:00.000Z' };
            expect(JSON.parse(snapshotMessageJson(fast.canonical, meta))).toEqual(JSON.parse(JSON.stringify({ ...fast.content, ...meta })));
            expect(fast.content).toEqual(slow.content);
            expect(fast.hash).toBe(slow.hash);
            expect(fast.diagnostics).toEqual(slow.diagnostics);
          }
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('joinSnapshotJson', () => {
  it('is canonicalJson of { service, inbound, upstreams, trust } from the parts’ canonical JSON (any JSON in every part)', () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.jsonValue(),
        fc.array(fc.jsonValue(), { maxLength: 5 }),
        fc.option(fc.jsonValue(), { nil: undefined }),
        (service, inbound, upstreams, trust) => {
          const content = { service, inbound, upstreams, trust } as unknown as SnapshotContent;
          const joined = joinSnapshotJson(
            service,
            canonicalJson(inbound),
            upstreams.map((u) => canonicalJson(u)),
            trust === undefined ? undefined : canonicalJson(trust),
          );
          expect(joined).toBe(canonicalJson(content));
        },
      ),
      { numRuns: 500 },
    );
  });
});
