import { describe, expect, it } from 'vitest';
import { ErrorCode, MeshValidationError } from './errors';
import { MALFORMED_REGISTRY_EVENTS, validService } from './fixtures';
import { decodeRegistryEvent } from './parse';

const enc = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));

describe('decodeRegistryEvent', () => {
  it('accepts a valid registration and fills defaults', () => {
    const ev = decodeRegistryEvent('mesh.v1.registry.payment.register', enc(validService()));
    expect(ev.action).toBe('register');
    if (ev.action !== 'register') throw new Error('unreachable');
    expect(ev.body.endpoints[0]).toMatchObject({ weight: 1, healthy: true, labels: {} });
    expect(ev.body.healthCheck).toMatchObject({ interval: 5000, timeout: 1000, healthyThreshold: 2, unhealthyThreshold: 3 });
  });

  it('accepts the seed durations as strings or milliseconds', () => {
    const ev = decodeRegistryEvent('mesh.v1.registry.payment.deregister', enc({ name: 'payment', drain: '1m' }));
    expect(ev.body).toEqual({ name: 'payment', drain: 60_000 });
    const ev2 = decodeRegistryEvent('mesh.v1.registry.payment.deregister', enc({ name: 'payment', drain: 250 }));
    expect(ev2.body).toEqual({ name: 'payment', drain: 250 });
  });

  it(`has at least 20 malformed cases`, () => {
    expect(MALFORMED_REGISTRY_EVENTS.length).toBeGreaterThanOrEqual(20);
  });

  for (const c of MALFORMED_REGISTRY_EVENTS) {
    it(`refuses ${c.name} with ${c.code}${c.path !== undefined ? ` at ${c.path}` : ''}`, () => {
      let caught: unknown;
      try {
        decodeRegistryEvent(
          c.subject,
          typeof c.payload === 'string' ? enc(c.payload) : c.payload instanceof Uint8Array ? c.payload : enc(c.payload),
        );
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(MeshValidationError);
      const err = caught as MeshValidationError;
      expect(err.code).toBe(c.code);
      expect(err.retryable).toBe(false);
      if (c.path !== undefined) expect(err.issues.map((i) => i.path)).toContain(c.path);
      if (c.message) expect(err.message).toMatch(c.message);
    });
  }

  it('reports every problem of a document at once', () => {
    const bad = { ...validService(), port: 0, type: 'udp', endpoints: [{ id: 'a', address: 'not an address', port: 70000, weight: -1 }] };
    try {
      decodeRegistryEvent('mesh.v1.registry.payment.register', enc(bad));
      expect.unreachable();
    } catch (e) {
      const paths = (e as MeshValidationError).issues.map((i) => i.path).sort();
      expect(paths).toEqual(['endpoints[0].address', 'endpoints[0].port', 'endpoints[0].weight', 'port', 'type']);
      expect((e as MeshValidationError).code).toBe(ErrorCode.invalid);
    }
  });
});
