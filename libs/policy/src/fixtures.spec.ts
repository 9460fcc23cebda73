import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Policy } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { parsePolicyDocuments } from './documents';
import { validatePolicy } from './validate';

const dir = join(__dirname, '__fixtures__', 'valid');
const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));

function load(file: string): Policy[] {
  return parsePolicyDocuments(readFileSync(join(dir, file), 'utf8')).map((d) => {
    expect(d.error, `${file} document ${d.index}`).toBeUndefined();
    const r = validatePolicy(d.value);
    if (!r.ok) throw new Error(`${file} document ${d.index}: ${JSON.stringify(r.issues)}`);
    return r.policy;
  });
}

describe('valid fixtures', () => {
  it('has a fixture for every kind', () => {
    const kinds = new Set(files.flatMap((f) => load(f).map((p) => p.kind)));
    expect([...kinds].sort()).toEqual(['AuthorizationPolicy', 'MutualTLSPolicy', 'RateLimitPolicy', 'RouteRule', 'TrafficPolicy']);
  });

  it.each(files)('%s validates without warnings, and the result validates to itself', (file) => {
    const docs = parsePolicyDocuments(readFileSync(join(dir, file), 'utf8'));
    expect(docs.length).toBeGreaterThan(0);
    for (const d of docs) {
      const r = validatePolicy(d.value);
      expect(r, `${file} document ${d.index}`).toMatchObject({ ok: true, warnings: [] });
      if (!r.ok) continue;
      // normalized output is a valid input that normalizes to itself (stored policies can be re-validated)
      const again = validatePolicy(JSON.parse(JSON.stringify(r.policy)));
      expect(again).toEqual({ ok: true, policy: r.policy, warnings: [] });
    }
  });

  it('normalizes the typed TrafficPolicy: durations in ms, defaults filled in', () => {
    const [payment, cart, catalog, , , , , mail] = load('traffic-policy.yaml');
    expect(payment).toMatchObject({
      loadBalancing: { algorithm: 'least-request', choiceCount: 3 },
      timeouts: { connect: 250, request: 5000, idle: 300_000 },
      outlierDetection: { interval: 10_000, baseEjectionTime: 30_000 },
      retries: {
        perTryTimeout: 1500,
        backoff: { baseInterval: 25, maxInterval: 250, jitter: true },
        budget: { ratio: 0.2, minRetriesPerSecond: 10 },
      },
    });
    expect(cart?.kind === 'TrafficPolicy' && cart.loadBalancing).toEqual({
      algorithm: 'ring-hash',
      hashKey: { header: 'x-user-id' },
      minRingSize: 2048,
      maxRingSize: 8_388_608,
    });
    expect(catalog).toMatchObject({ timeouts: { request: 2000 }, loadBalancing: { hashKey: { cookie: 'session' }, tableSize: 65537 } });
    expect(mail?.kind === 'TrafficPolicy' && mail.outlierDetection).toEqual({
      consecutive5xx: 5,
      interval: 10_000,
      baseEjectionTime: 30_000,
      maxEjectionPercent: 10,
    });
  });

  it("normalizes the seed's string maps to the typed form", () => {
    const [orders, inventory] = load('traffic-policy-seed.yaml');
    expect(orders).toEqual({
      kind: 'TrafficPolicy',
      name: 'orders-traffic',
      serviceName: 'orders',
      loadBalancing: { algorithm: 'least-request', choiceCount: 2 },
      circuitBreaking: { maxConnections: 100, maxPendingRequests: 50, maxRequests: 200, maxRetries: 3 },
      timeouts: { connect: 5000, request: 30_000, idle: 60_000 },
      retries: {
        attempts: 3,
        perTryTimeout: 2000,
        retryOn: ['connect-failure', '5xx', 'retriable-status-codes'],
        retriableStatusCodes: [502, 503],
      },
    });
    expect(inventory).toEqual({
      kind: 'TrafficPolicy',
      name: 'inventory-traffic',
      serviceName: 'inventory',
      loadBalancing: { algorithm: 'ring-hash', hashKey: { header: 'x-tenant' }, minRingSize: 1024, maxRingSize: 8_388_608 },
      outlierDetection: { consecutive5xx: 7, interval: 10_000, baseEjectionTime: 60_000, maxEjectionPercent: 25 },
    });
  });

  it('normalizes RouteRules: single-subset weights, default match, percentages', () => {
    const [reviews, ratings] = load('route-rule.yaml');
    if (reviews?.kind !== 'RouteRule' || ratings?.kind !== 'RouteRule') throw new Error('expected RouteRules');
    expect(reviews.routes[0]?.split).toEqual([{ subset: 'v2', weight: 100 }]);
    expect(reviews.routes[2]).toMatchObject({ timeout: 3000, mirror: { subset: 'v2', percentage: 5 }, retries: { perTryTimeout: 1000 } });
    expect(reviews.routes[3]?.match).toEqual({});
    expect(ratings.routes[0]?.fault).toEqual({ delay: { fixedDelay: 500, percentage: 10 }, abort: { httpStatus: 503, percentage: 2 } });
  });

  it('fills rate-limit and authorization defaults', () => {
    const [, search] = load('rate-limit-policy.yaml');
    expect(search).toMatchObject({
      limits: [{ scope: 'local', requests: 100, per: 'second', key: { type: 'path' } }],
      response: { status: 429, sendHeaders: true },
      failureMode: 'open',
    });
    const [deny] = load('authorization-policy.yaml');
    expect(deny).toMatchObject({ serviceName: '*', action: 'DENY', rules: [{ from: { namespaces: ['sandbox'] } }] });
  });
});
