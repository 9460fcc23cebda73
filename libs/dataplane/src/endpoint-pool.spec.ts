import { LOCALITY_LABEL, LoadBalancingSchema } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { EndpointPool, type PoolEndpoint, selectEndpoints } from './endpoint-pool';
import type { RequestView } from './request-view';

const ep = (id: string, labels: Record<string, string> = {}, status: PoolEndpoint['status'] = 'healthy'): PoolEndpoint => ({
  id,
  weight: 1,
  active: 0,
  labels,
  status,
});
const req: RequestView = { method: 'GET', path: '/', query: '', headers: {} };

describe('selectEndpoints', () => {
  const eps = [
    ep('a', { version: 'v1', [LOCALITY_LABEL]: 'eu-1' }),
    ep('b', { version: 'v2', [LOCALITY_LABEL]: 'eu-1' }),
    ep('c', { version: 'v1', [LOCALITY_LABEL]: 'eu-2' }),
    ep('d', { version: 'v1' }, 'draining'),
    ep('e', { version: 'v1' }, 'unhealthy'),
  ];
  const ids = (list: readonly PoolEndpoint[]) => list.map((e) => e.id);

  it('keeps healthy, not ejected endpoints carrying every subset label', () => {
    expect(ids(selectEndpoints(eps))).toEqual(['a', 'b', 'c']);
    expect(ids(selectEndpoints(eps, { subsetLabels: { version: 'v1' } }))).toEqual(['a', 'c']);
    expect(ids(selectEndpoints(eps, { subsetLabels: { version: 'v1' }, ejected: (id) => id === 'a' }))).toEqual(['c']);
    expect(selectEndpoints(eps, { subsetLabels: { version: 'v3' } })).toEqual([]);
  });

  it('prefers the caller’s zone and fails over to every zone when it has none left', () => {
    expect(ids(selectEndpoints(eps, { locality: 'eu-1' }))).toEqual(['a', 'b']);
    expect(ids(selectEndpoints(eps, { locality: 'eu-2', subsetLabels: { version: 'v1' } }))).toEqual(['c']);
    expect(ids(selectEndpoints(eps, { locality: 'eu-2', ejected: (id) => id === 'c' }))).toEqual(['a', 'b']);
    expect(ids(selectEndpoints(eps, { locality: 'us-1' }))).toEqual(['a', 'b', 'c']);
  });

  it('returns the input itself when nothing is filtered out', () => {
    const healthy = [ep('a'), ep('b')];
    expect(selectEndpoints(healthy)).toBe(healthy);
    expect(selectEndpoints(healthy, { ejected: () => true })).not.toBe(healthy);
  });
});

describe('EndpointPool', () => {
  const rr = LoadBalancingSchema.parse('round-robin');
  const subsets = [{ name: 'v2', labels: { version: 'v2' } }];

  function pool() {
    const eps = [ep('a', { version: 'v1' }), ep('b', { version: 'v2' }), ep('c', { version: 'v2' })];
    const ejections = { version: 0, out: new Set<string>(), isEjected: (id: string) => ejections.out.has(id) };
    return { eps, ejections, pool: new EndpointPool(rr, subsets, eps, { ejections, random: () => 0 }) };
  }

  it('picks per subset, nothing from an unknown subset', () => {
    const { pool: p } = pool();
    expect(new Set(Array.from({ length: 6 }, () => p.pick(req)?.id))).toEqual(new Set(['a', 'b', 'c']));
    expect(new Set(Array.from({ length: 6 }, () => p.pick(req, 'v2')?.id))).toEqual(new Set(['b', 'c']));
    expect(p.pick(req, 'nope')).toBeUndefined();
  });

  it('keeps one balancer while the eligible set stays the same, rebuilds when it changes', () => {
    const { pool: p, ejections, eps } = pool();
    const first = p.balancer('v2');
    expect(p.balancer('v2')).toBe(first);
    ejections.version++; // something else changed: same eligible set, same balancer
    expect(p.balancer('v2')).toBe(first);
    ejections.out.add('b');
    ejections.version++;
    const second = p.balancer('v2');
    expect(second).not.toBe(first);
    expect(second.endpoints.map((e) => e.id)).toEqual(['c']);
    (eps[2] as PoolEndpoint).status = 'draining';
    p.invalidate();
    expect(p.pick(req, 'v2')).toBeUndefined();
    p.setEndpoints([ep('d', { version: 'v2' })]);
    expect(p.pick(req, 'v2')?.id).toBe('d');
  });
});
