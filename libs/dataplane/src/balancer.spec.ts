import { LoadBalancingSchema } from '@novamesh/contracts';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LbEndpoint } from './balancer';
import { createBalancer } from './create-balancer';
import type { RequestView } from './request-view';
import { RingHashBalancer } from './ring-hash.balancer';

const endpoints = (n: number, weight = 1): LbEndpoint[] =>
  Array.from({ length: n }, (_, i) => ({ id: `10.0.${i >> 8}.${i & 255}:8080`, weight, active: 0, labels: {} }));
const req = (headers: RequestView['headers'] = {}, over: Partial<RequestView> = {}): RequestView => ({
  method: 'GET',
  path: '/',
  query: '',
  headers,
  ...over,
});
const lb = (input: unknown) => LoadBalancingSchema.parse(input);

/** A deterministic random source (mulberry32), so distribution assertions cannot flake. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function counts(pick: () => LbEndpoint | undefined, n: number): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const id = pick()?.id ?? 'none';
    out.set(id, (out.get(id) ?? 0) + 1);
  }
  return out;
}

describe('round-robin', () => {
  it('cycles through every endpoint in order, exactly evenly', () => {
    const eps = endpoints(4);
    const b = createBalancer(lb('round-robin'), eps, { random: seeded(1) });
    const first = b.pick(req()) as LbEndpoint;
    const start = eps.indexOf(first);
    for (let i = 1; i < 12; i++) expect(b.pick(req())).toBe(eps[(start + i) % 4]);
    const c = counts(() => b.pick(req()), 10_000);
    for (const e of eps) expect(c.get(e.id)).toBe(2500);
  });

  it('skips endpoints a retry already tried, and retries anyway when all were', () => {
    const eps = endpoints(3);
    const b = createBalancer(lb('round-robin'), eps, { random: () => 0 });
    const tried = new Set([eps[0]?.id as string, eps[1]?.id as string]);
    for (let i = 0; i < 6; i++) expect(b.pick(req(), tried)).toBe(eps[2]);
    expect(b.pick(req(), new Set(eps.map((e) => e.id)))).toBeDefined();
  });

  it('never picks weight 0 and has nothing to pick from an empty set', () => {
    const eps = endpoints(3);
    (eps[1] as LbEndpoint).weight = 0;
    const b = createBalancer(lb('round-robin'), eps);
    expect(counts(() => b.pick(req()), 100).has(eps[1]?.id as string)).toBe(false);
    expect(createBalancer(lb('round-robin'), []).pick(req())).toBeUndefined();
  });
});

describe('random', () => {
  it('spreads picks roughly uniformly', () => {
    const eps = endpoints(5);
    const b = createBalancer(lb('random'), eps, { random: seeded(7) });
    const c = counts(() => b.pick(req()), 10_000);
    for (const e of eps) expect(Math.abs((c.get(e.id) ?? 0) - 2000)).toBeLessThan(200);
  });

  it('honours exclude and handles an empty set', () => {
    const eps = endpoints(3);
    const b = createBalancer(lb('random'), eps, { random: seeded(3) });
    const tried = new Set([eps[0]?.id as string]);
    expect(counts(() => b.pick(req(), tried), 1000).has(eps[0]?.id as string)).toBe(false);
    expect(createBalancer(lb('random'), []).pick(req())).toBeUndefined();
  });
});

describe('least-request', () => {
  it('strongly prefers less loaded endpoints (power of two choices)', () => {
    const eps = endpoints(4);
    eps.forEach((e, i) => {
      e.active = i * 10; // 0, 10, 20, 30 in flight
    });
    const b = createBalancer(lb({ algorithm: 'least-request' }), eps, { random: seeded(11) });
    const c = counts(() => b.pick(req()), 10_000);
    // P(pick i) with two draws out of 4: (2(4-i)-1)/16 → 7/16, 5/16, 3/16, 1/16.
    expect(c.get(eps[0]?.id as string)).toBeGreaterThan(4000);
    expect(c.get(eps[3]?.id as string)).toBeLessThan(900);
    expect(c.get(eps[0]?.id as string) as number).toBeGreaterThan((c.get(eps[1]?.id as string) as number) * 1.2);
  });

  it('with more choices concentrates on the least loaded one', () => {
    const eps = endpoints(4);
    eps.forEach((e, i) => {
      e.active = i;
    });
    const b = createBalancer(lb({ algorithm: 'least-request', choiceCount: 10 }), eps, { random: seeded(5) });
    expect(counts(() => b.pick(req()), 10_000).get(eps[0]?.id as string)).toBeGreaterThan(9000);
  });

  it('reads active counts live, honours exclude and handles an empty set', () => {
    const eps = endpoints(2);
    const b = createBalancer(lb({ algorithm: 'least-request' }), eps, { random: seeded(9) });
    (eps[0] as LbEndpoint).active = 100;
    expect(counts(() => b.pick(req()), 1000).get(eps[1]?.id as string)).toBeGreaterThan(700);
    expect(b.pick(req(), new Set([eps[1]?.id as string]))).toBe(eps[0]);
    expect(createBalancer(lb({ algorithm: 'least-request' }), []).pick(req())).toBeUndefined();
  });
});

describe('weighted (smooth weighted round robin)', () => {
  it('picks in proportion to weights, never weight 0', () => {
    const eps = endpoints(4);
    [5, 3, 2, 0].forEach((w, i) => {
      (eps[i] as LbEndpoint).weight = w;
    });
    const b = createBalancer(lb('weighted'), eps);
    const c = counts(() => b.pick(req()), 10_000);
    expect(c.get(eps[0]?.id as string)).toBe(5000);
    expect(c.get(eps[1]?.id as string)).toBe(3000);
    expect(c.get(eps[2]?.id as string)).toBe(2000);
    expect(c.has(eps[3]?.id as string)).toBe(false);
  });

  it('interleaves rather than sending bursts (nginx sequence for 5,1,1)', () => {
    const eps = endpoints(3);
    [5, 1, 1].forEach((w, i) => {
      (eps[i] as LbEndpoint).weight = w;
    });
    const b = createBalancer(lb('weighted'), eps);
    const seq = Array.from({ length: 7 }, () => eps.indexOf(b.pick(req()) as LbEndpoint));
    expect(seq).toEqual([0, 0, 1, 0, 2, 0, 0]);
  });

  it('honours exclude, keeps proportions among the rest, and handles empty and all-zero sets', () => {
    const eps = endpoints(3);
    [1, 2, 1].forEach((w, i) => {
      (eps[i] as LbEndpoint).weight = w;
    });
    const b = createBalancer(lb('weighted'), eps);
    const c = counts(() => b.pick(req(), new Set([eps[1]?.id as string])), 1000);
    expect(c.has(eps[1]?.id as string)).toBe(false);
    expect(c.get(eps[0]?.id as string)).toBe(500);
    expect(createBalancer(lb('weighted'), []).pick(req())).toBeUndefined();
    expect(createBalancer(lb('weighted'), endpoints(2, 0)).pick(req())).toBeUndefined();
  });
});

const hashing = [
  ['ring-hash', (hashKey: unknown) => lb({ algorithm: 'ring-hash', hashKey })],
  ['maglev', (hashKey: unknown) => lb({ algorithm: 'maglev', hashKey })],
] as const;

describe.each(hashing)('%s', (_name, config) => {
  const users = Array.from({ length: 5000 }, (_, i) => `user-${i}`);
  const byUser = (u: string) => req({ 'x-user': u });

  it('sends the same key to the same endpoint, and spreads keys evenly', () => {
    const eps = endpoints(10);
    const b = createBalancer(config({ header: 'x-user' }), eps);
    const again = createBalancer(config({ header: 'x-user' }), [...eps].reverse());
    const c = new Map<string, number>();
    for (const u of users) {
      const e = b.pick(byUser(u)) as LbEndpoint;
      expect(b.pick(byUser(u))).toBe(e);
      expect(again.pick(byUser(u))).toBe(e); // placement does not depend on list order
      c.set(e.id, (c.get(e.id) ?? 0) + 1);
    }
    for (const e of eps) expect(Math.abs((c.get(e.id) ?? 0) - 500)).toBeLessThan(500 * 0.3);
  });

  it('moves only about 1/N of the keys when one of N endpoints goes (≤ 2/N)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.stringMatching(/^[a-z0-9.:-]{3,20}$/), { minLength: 4, maxLength: 30 }), fc.nat(), (ids, r) => {
        const eps = ids.map((id) => ({ id, weight: 1, active: 0, labels: {} }));
        const gone = r % eps.length;
        const before = createBalancer(config({ header: 'x-user' }), eps);
        const after = createBalancer(
          config({ header: 'x-user' }),
          eps.filter((_, i) => i !== gone),
        );
        let moved = 0;
        for (const u of users.slice(0, 2000)) if (before.pick(byUser(u)) !== after.pick(byUser(u))) moved++;
        expect(moved / 2000).toBeLessThanOrEqual(2 / eps.length);
      }),
      { numRuns: 25, seed: 42 },
    );
  });

  it('gives endpoints key shares in proportion to their weights; weight 0 gets none', () => {
    const eps = endpoints(3);
    [3, 1, 0].forEach((w, i) => {
      (eps[i] as LbEndpoint).weight = w;
    });
    const b = createBalancer(config({ header: 'x-user' }), eps);
    const c = counts(() => b.pick(byUser(`k-${Math.random()}`)), 8000);
    expect((c.get(eps[0]?.id as string) ?? 0) / 8000).toBeCloseTo(0.75, 1);
    expect(c.has(eps[2]?.id as string)).toBe(false);
  });

  it('hashes on a cookie, a query parameter or the source IP', () => {
    const eps = endpoints(8);
    const cases: [unknown, (k: string) => RequestView][] = [
      [{ cookie: 'sid' }, (k) => req({ cookie: `theme=x; sid=${k}` })],
      [{ queryParameter: 'tenant' }, (k) => req({}, { query: `a=1&tenant=${k}` })],
      [{ sourceIp: true }, (k) => req({}, { sourceIp: k })],
    ];
    for (const [hashKey, make] of cases) {
      const b = createBalancer(config(hashKey), eps);
      const picked = new Set<string>();
      for (let i = 0; i < 200; i++) {
        const e = b.pick(make(`key-${i}`)) as LbEndpoint;
        expect(b.pick(make(`key-${i}`))).toBe(e);
        picked.add(e.id);
      }
      expect(picked.size).toBe(8);
    }
  });

  it('picks at random without a key, avoids tried endpoints, and handles an empty set', () => {
    const eps = endpoints(4);
    const b = createBalancer(config({ header: 'x-user' }), eps, { random: seeded(2) });
    expect(counts(() => b.pick(req()), 4000).size).toBe(4);
    const home = b.pick(byUser('alice')) as LbEndpoint;
    const retry = b.pick(byUser('alice'), new Set([home.id]));
    expect(retry).toBeDefined();
    expect(retry).not.toBe(home);
    expect(b.pick(byUser('alice'), new Set([home.id]))).toBe(retry); // a retry is consistent too
    expect(b.pick(byUser('alice'), new Set(eps.map((e) => e.id)))).toBeDefined();
    expect(createBalancer(config({ header: 'x-user' }), []).pick(byUser('alice'))).toBeUndefined();
  });
});

describe('hashing build cost and sizing', () => {
  it('builds a 65537-slot maglev table for 100 endpoints in well under 50 ms', () => {
    const eps = endpoints(100);
    createBalancer(lb({ algorithm: 'maglev', hashKey: 'header:x-user' }), eps); // warm up
    const t0 = performance.now();
    createBalancer(lb({ algorithm: 'maglev', hashKey: 'header:x-user' }), eps);
    expect(performance.now() - t0).toBeLessThan(50);
  });

  it('sizes the ring between minRingSize and maxRingSize, in proportion to weights', () => {
    const eps = endpoints(3);
    const key = () => undefined;
    expect(new RingHashBalancer(eps, key, { minRingSize: 1024, maxRingSize: 8_388_608 }).ringSize).toBeGreaterThanOrEqual(1024);
    expect(new RingHashBalancer(eps, key, { minRingSize: 1024, maxRingSize: 300 }).ringSize).toBeLessThanOrEqual(300);
    expect(new RingHashBalancer(endpoints(10), key, { minRingSize: 16, maxRingSize: 8_388_608 }).ringSize).toBe(2560);
  });
});
