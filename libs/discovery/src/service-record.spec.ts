import { type Service, ServiceSchema } from '@novamesh/contracts';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { computeEndpointSet } from './endpoint-set';
import {
  type Applied,
  activeEndpointIds,
  applyDeregister,
  applyEndpointAdd,
  applyEndpointRemove,
  applyRegister,
  applySweep,
  type ServiceRecord,
} from './service-record';

const svc = (ids: string[], extra: Partial<Record<string, unknown>> = {}): Service =>
  ServiceSchema.parse({
    name: 'payment',
    type: 'http',
    port: 80,
    endpoints: ids.map((id, i) => ({ id, address: `10.0.0.${i + 1}`, port: 9000 + i })),
    ...extra,
  });

const rec = (a: Applied): ServiceRecord => {
  if (a.kind !== 'changed') throw new Error(`expected a change, got ${a.why}`);
  return a.record;
};

describe('applying registry events', () => {
  it('registers, then replaces the endpoint set', () => {
    const r1 = rec(applyRegister(undefined, svc(['a', 'b']), 1, 1000));
    expect(activeEndpointIds(r1)).toEqual(['a', 'b']);
    const r2 = rec(applyRegister(r1, svc(['b', 'c']), 2, 2000));
    expect(activeEndpointIds(r2).sort()).toEqual(['b', 'c']);
  });

  it('ignores a redelivered or older registration', () => {
    const r1 = rec(applyRegister(undefined, svc(['a']), 5, 1000));
    expect(applyRegister(r1, svc(['a', 'b']), 5, 1000)).toEqual({ kind: 'unchanged', why: 'stale' });
    expect(applyRegister(r1, svc(['z']), 3, 1000)).toEqual({ kind: 'unchanged', why: 'stale' });
  });

  it('keeps an endpoint added after a registration even when the registration is applied last', () => {
    const r1 = rec(applyRegister(undefined, svc(['a']), 1, 1000));
    const added = rec(applyEndpointAdd(r1, 'payment', svc(['x']).endpoints[0]!, 7));
    // a re-registration published before the add (seq 6) arrives late
    const late = rec(applyRegister(added, svc(['a']), 6, 2000));
    expect(activeEndpointIds(late).sort()).toEqual(['a', 'x']);
  });

  it('refuses to add an endpoint to an unknown service with a retryable not-found', () => {
    expect(() => applyEndpointAdd(undefined, 'payment', svc(['a']).endpoints[0]!, 1)).toThrow(/not registered/);
    try {
      applyEndpointAdd(undefined, 'payment', svc(['a']).endpoints[0]!, 1);
    } catch (e) {
      expect((e as { retryable: boolean }).retryable).toBe(true);
    }
  });

  it('drains on deregistration, then removes once the drain is over', () => {
    const r1 = rec(applyRegister(undefined, svc(['a', 'b']), 1, 1000));
    const draining = rec(applyDeregister(r1, 5000, 2, 10_000));
    expect(computeEndpointSet(draining, {}, 10_000).endpoints.map((e) => e.status)).toEqual(['draining', 'draining']);
    expect(applySweep(draining, 14_999)).toEqual({ kind: 'unchanged', why: 'no-op' });
    const gone = rec(applySweep(draining, 15_000));
    const set = computeEndpointSet(gone, {}, 15_000);
    expect(set.deregistered).toBe(true);
    expect(set.endpoints).toEqual([]);
  });

  it('drains one endpoint on removal', () => {
    const r1 = rec(applyRegister(undefined, svc(['a', 'b']), 1, 0));
    const r2 = rec(applyEndpointRemove(r1, 'a', 1000, 2, 0));
    expect(computeEndpointSet(r2, {}, 0).endpoints.map((e) => [e.id, e.status])).toEqual([
      ['a', 'draining'],
      ['b', 'healthy'],
    ]);
    expect(activeEndpointIds(rec(applySweep(r2, 1000)))).toEqual(['b']);
    // removing an unknown endpoint changes no endpoint set
    expect(activeEndpointIds(rec(applyEndpointRemove(r2, 'nope', 0, 3, 0))).sort()).toEqual(['a', 'b']);
  });

  it('marks silent endpoints unhealthy after the TTL and removes them after deregisterAfter', () => {
    const r = rec(applyRegister(undefined, svc(['a', 'b'], { heartbeat: { ttl: '1s', deregisterAfter: '5s' } }), 1, 0));
    const hb = new Map([
      ['a', 10_000],
      ['b', 8_500],
    ]);
    const set = computeEndpointSet(r, { heartbeats: hb }, 10_000);
    expect(set.endpoints.map((e) => [e.id, e.status, e.reason])).toEqual([
      ['a', 'healthy', undefined],
      ['b', 'unhealthy', 'heartbeat-expired'],
    ]);
    expect(applySweep(r, 13_000, hb)).toEqual({ kind: 'unchanged', why: 'no-op' });
    expect(activeEndpointIds(rec(applySweep(r, 14_000, hb)))).toEqual(['a']);
  });

  it('orders statuses: draining, declared unhealthy, heartbeat, check', () => {
    const s = ServiceSchema.parse({
      name: 'payment',
      type: 'http',
      port: 80,
      heartbeat: { ttl: 1000 },
      healthCheck: { protocol: 'tcp' },
      endpoints: [
        { id: 'a', address: '10.0.0.1', port: 1, healthy: false },
        { id: 'b', address: '10.0.0.2', port: 1 },
        { id: 'c', address: '10.0.0.3', port: 1 },
        { id: 'd', address: '10.0.0.4', port: 1 },
      ],
    });
    const r = rec(applyRegister(undefined, s, 1, 0));
    const set = computeEndpointSet(
      r,
      { heartbeats: new Map([['b', 0]]), checks: new Map([['c', { status: 'unhealthy', detail: 'HTTP 503' }]]) },
      5000,
    );
    expect(set.endpoints.map((e) => e.reason ?? e.status)).toEqual([
      'declared-unhealthy',
      'heartbeat-expired',
      'check-failed: HTTP 503',
      'healthy',
    ]);
  });

  it('hashes equal sets equally and different sets differently', () => {
    const a = rec(applyRegister(undefined, svc(['a', 'b']), 1, 0));
    const b = rec(applyRegister(undefined, svc(['a', 'b']), 9, 500));
    expect(computeEndpointSet(a, {}, 0).hash).toBe(computeEndpointSet(b, {}, 99).hash);
    expect(computeEndpointSet(a, {}, 0).hash).not.toBe(computeEndpointSet(rec(applyRegister(undefined, svc(['a']), 1, 0)), {}, 0).hash);
  });

  it('converges to the same endpoints whatever order add/remove events are applied in', () => {
    // Property: a set of endpoint add/remove events with distinct sequences, applied in any
    // order (as replicas may), ends where applying them in sequence order ends.
    const base = rec(applyRegister(undefined, svc([]), 1, 0));
    const op = fc.record({ id: fc.constantFrom('a', 'b', 'c'), add: fc.boolean() });
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 12 }), fc.infiniteStream(fc.nat()), (ops, rand) => {
        const events = ops.map((o, i) => ({ ...o, seq: i + 2 }));
        const apply = (order: typeof events) =>
          order.reduce((r, e) => {
            const a = e.add ? applyEndpointAdd(r, 'payment', svc([e.id]).endpoints[0]!, e.seq) : applyEndpointRemove(r, e.id, 0, e.seq, 0);
            return a.kind === 'changed' ? a.record : r;
          }, base);
        const shuffled = [...events].sort(() => (rand.next().value % 3) - 1);
        return activeEndpointIds(apply(events)).sort().join() === activeEndpointIds(apply(shuffled)).sort().join();
      }),
    );
  });
});
