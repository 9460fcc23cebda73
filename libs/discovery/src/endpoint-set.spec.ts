import { EndpointSetV1, ServiceSchema } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { computeEndpointSet, toEndpointSetEvent } from './endpoint-set';
import { applyRegister, type ServiceRecord } from './service-record';

const record = (extra: Record<string, unknown> = {}): ServiceRecord => {
  const applied = applyRegister(
    undefined,
    ServiceSchema.parse({ name: 'orders', type: 'http', port: 80, endpoints: [{ id: 'a', address: '10.0.0.1', port: 9000 }], ...extra }),
    1,
    1000,
  );
  if (applied.kind !== 'changed') throw new Error('expected a change');
  return applied.record;
};

describe('endpoint set events', () => {
  it('carry the upstreams a service declared, and only then', () => {
    const declared = record({ upstreams: ['payment', 'stock'] });
    const event = toEndpointSetEvent('orders', declared, computeEndpointSet(declared, {}, 1000), 1, 1000);
    expect(EndpointSetV1.parse(event).upstreams).toEqual(['payment', 'stock']);
    const open = record();
    expect(toEndpointSetEvent('orders', open, computeEndpointSet(open, {}, 1000), 1, 1000)).not.toHaveProperty('upstreams');
  });

  it('hash differently when only the declared upstreams change, so the change is published', () => {
    const a = computeEndpointSet(record({ upstreams: ['payment'] }), {}, 1000);
    const b = computeEndpointSet(record({ upstreams: ['payment', 'stock'] }), {}, 1000);
    const none = computeEndpointSet(record(), {}, 1000);
    expect(new Set([a.hash, b.hash, none.hash]).size).toBe(3);
  });

  it('refuse an upstream that is not a service name, naming the entry', () => {
    const parsed = ServiceSchema.safeParse({ name: 'orders', type: 'http', port: 80, upstreams: ['payment', 'Bad_Name'] });
    expect(parsed.success).toBe(false);
    expect(parsed.error?.issues.map((i) => i.path.join('.'))).toEqual(['upstreams.1']);
  });
});
