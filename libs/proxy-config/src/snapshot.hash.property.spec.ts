import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical-json';
import { canaryRuleFixture, effectivePolicyFixture, endpointSetFixture, rateLimitFixture, trafficPolicyFixture } from './fixtures';
import { compileSnapshot } from './snapshot.compiler';
import { hashSnapshot, type SnapshotContent } from './snapshot.hash';

/** A realistic snapshot content with every optional part filled in. */
function rich(): SnapshotContent {
  const sets = [endpointSetFixture('web', { upstreams: ['cart', 'web'] }), endpointSetFixture('cart', { namespace: 'shop', count: 3 })];
  return compileSnapshot({
    service: 'web',
    endpoints: new Map(sets.map((s) => [s.service, s])),
    policies: new Map([
      ['cart', effectivePolicyFixture('cart', { traffic: trafficPolicyFixture('cart'), routes: [canaryRuleFixture('cart')] })],
      ['web', effectivePolicyFixture('web', { rateLimits: [rateLimitFixture('web')], mtls: { mode: 'strict', source: 'x' } })],
    ]),
    bundle: { trustDomain: 'td', roots: [{ pem: 'PEM', fingerprint256: 'f', notAfter: 'n' }], updatedAt: 'u' },
    revoked: { serials: ['0a'], updatedAt: 'u' },
  }).content;
}

/** A deep copy whose object keys are inserted in an order picked by `rand`. */
function shuffleKeys(v: unknown, rand: () => number): unknown {
  if (Array.isArray(v)) return v.map((x) => shuffleKeys(x, rand));
  if (v === null || typeof v !== 'object') return v;
  const keys = Object.keys(v);
  for (let i = keys.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [keys[i], keys[j]] = [keys[j] as string, keys[i] as string];
  }
  const out: Record<string, unknown> = {};
  // defineProperty: a `__proto__` key (JSON.parse makes it an own member) must stay a member.
  for (const k of keys)
    Object.defineProperty(out, k, { value: shuffleKeys((v as Record<string, unknown>)[k], rand), enumerable: true, writable: true });
  return out;
}

type Spot = { parent: Record<string, unknown> | unknown[]; key: string | number; path: string };

/** Every member and element of a value, with its path. */
function spots(v: unknown, path = '', out: Spot[] = []): Spot[] {
  if (Array.isArray(v))
    v.forEach((c, i) => {
      out.push({ parent: v, key: i, path: `${path}[${i}]` });
      spots(c, `${path}[${i}]`, out);
    });
  else if (v !== null && typeof v === 'object')
    for (const [k, c] of Object.entries(v)) {
      out.push({ parent: v as Record<string, unknown>, key: k, path: path ? `${path}.${k}` : k });
      spots(c, path ? `${path}.${k}` : k, out);
    }
  return out;
}

/** A different value of the same kind. */
function mutate(v: unknown): unknown {
  if (typeof v === 'number') return v + 1;
  if (typeof v === 'string') return `${v}x`;
  if (typeof v === 'boolean') return !v;
  if (v === null) return 0;
  if (Array.isArray(v)) return [...v, 'extra'];
  return { ...(v as object), extra: true };
}

describe('hashSnapshot', () => {
  it('is SHA-256 hex of the canonical JSON of service, inbound, upstreams and trust only', () => {
    const content = rich();
    const hash = hashSnapshot(content);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    const withExtras = { ...content, version: 9, hash: 'x', createdAt: 'now' } as SnapshotContent;
    expect(hashSnapshot(withExtras)).toBe(hash);
  });

  it('does not depend on key order (realistic content)', () => {
    const content = rich();
    const hash = hashSnapshot(content);
    fc.assert(
      fc.property(fc.infiniteStream(fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })), (stream) => {
        const it = stream[Symbol.iterator]();
        const shuffled = shuffleKeys(content, () => it.next().value as number) as SnapshotContent;
        expect(hashSnapshot(shuffled)).toBe(hash);
      }),
      { numRuns: 200 },
    );
  });

  it('does not depend on key order (any JSON in every field)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), fc.jsonValue(), fc.string(), fc.integer(), (inbound, upstreams, trust, service, seed) => {
        let s = seed;
        const rand = () => {
          s = (s * 1_103_515_245 + 12_345) & 0x7fffffff;
          return s / 0x80000000;
        };
        const content = { service, inbound, upstreams, trust } as unknown as SnapshotContent;
        const shuffled = shuffleKeys(content, rand) as SnapshotContent;
        expect(hashSnapshot(shuffled)).toBe(hashSnapshot(content));
        expect(canonicalJson(shuffled)).toBe(canonicalJson(content));
      }),
      { numRuns: 300 },
    );
  });

  it('changes when any field, element or member changes, is added or is removed', () => {
    const content = rich();
    const hash = hashSnapshot(content);
    const all = spots(content);
    expect(all.length).toBeGreaterThan(100);
    const seen = new Set<string>([hash]);
    for (const { path } of all) {
      for (const op of ['change', 'remove'] as const) {
        const copy = structuredClone(content);
        const spot = spots(copy).find((s) => s.path === path) as Spot;
        if (op === 'change')
          (spot.parent as Record<string | number, unknown>)[spot.key] = mutate((spot.parent as Record<string | number, unknown>)[spot.key]);
        else if (Array.isArray(spot.parent)) spot.parent.splice(spot.key as number, 1);
        else delete spot.parent[spot.key as string];
        const h = hashSnapshot(copy);
        expect(h, `${op} ${path}`).not.toBe(hash);
        seen.add(h);
      }
    }
    // Distinct edits give distinct hashes too (no two collapse onto one canonical form).
    expect(seen.size).toBeGreaterThan(all.length);
  });

  it('changes when array order changes (order is meaning: routes, splits)', () => {
    const content = rich();
    const copy = structuredClone(content);
    copy.upstreams[0]?.routes[0]?.split?.reverse();
    expect(hashSnapshot(copy)).not.toBe(hashSnapshot(content));
  });
});
