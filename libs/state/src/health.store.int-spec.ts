import { once } from 'node:events';
import { TestRedis } from '@novamesh/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HealthStore } from './health.store';
import { createRedis } from './redis';

let server: TestRedis;
let redis: Redis;
let store: HealthStore;

beforeAll(async () => {
  server = await TestRedis.start();
  redis = new Redis(server.url);
  store = new HealthStore(redis);
});
afterAll(async () => {
  redis.disconnect();
  await server?.dispose();
});

const result = (ok: boolean, now: number) => ({
  ok,
  detail: ok ? 'HTTP 200' : 'HTTP 503',
  healthyThreshold: 2,
  unhealthyThreshold: 3,
  now,
  by: 'd1',
});

describe('HealthStore against a real Redis', () => {
  it('applies Envoy-style thresholds atomically', async () => {
    expect(await store.recordCheck('svc', 'e1', result(true, 1))).toEqual({ status: 'healthy', changed: false });
    expect(await store.recordCheck('svc', 'e1', result(false, 2))).toEqual({ status: 'healthy', changed: false });
    expect(await store.recordCheck('svc', 'e1', result(false, 3))).toEqual({ status: 'healthy', changed: false });
    expect(await store.recordCheck('svc', 'e1', result(false, 4))).toEqual({ status: 'unhealthy', changed: true });
    expect(await store.recordCheck('svc', 'e1', result(true, 5))).toEqual({ status: 'unhealthy', changed: false });
    expect(await store.recordCheck('svc', 'e1', result(true, 6))).toEqual({ status: 'healthy', changed: true });
    const checks = await store.checks('svc');
    expect(checks.get('e1')).toMatchObject({ status: 'healthy', ok: 2, fail: 0, checkedAt: 6, detail: 'HTTP 200', by: 'd1' });
  });

  it('counts concurrent results without losing one', async () => {
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => store.recordCheck('svc', 'e2', { ...result(false, i), unhealthyThreshold: 100 })),
    );
    expect((await store.checks('svc')).get('e2')?.fail).toBe(50);
  });

  it('starts the TTL of endpoints without a recorded heartbeat instead of expiring them', async () => {
    await store.recordHeartbeat('hb', ['a'], 1000);
    const seen = await store.heartbeats('hb', ['a', 'b'], 5000);
    expect(Object.fromEntries(seen)).toEqual({ a: 1000, b: 5000 });
    expect(Object.fromEntries(await store.heartbeats('hb', ['a', 'b'], 9000))).toEqual({ a: 1000, b: 5000 });
  });

  it('grants each check slot to exactly one replica', async () => {
    const wins = await Promise.all(['d1', 'd2', 'd3'].map((d) => store.claimCheck('svc', 'e1', 42, d, 1000)));
    expect(wins.filter(Boolean)).toHaveLength(1);
    expect(await store.claimCheck('svc', 'e1', 43, 'd2', 1000)).toBe(true);
  });

  it('lists live members and forgets silent ones', async () => {
    await store.touchMember('g', 'd1', 10_000, 3000);
    await store.touchMember('g', 'd2', 11_000, 3000);
    expect(await store.touchMember('g', 'd3', 12_000, 3000)).toEqual(['d1', 'd2', 'd3']);
    expect(await store.touchMember('g', 'd3', 13_500, 3000)).toEqual(['d2', 'd3']);
    await store.leave('g', 'd2');
    expect(await store.touchMember('g', 'd3', 13_600, 3000)).toEqual(['d3']);
  });

  it('fails fast while Redis is down and works again after it restarts', async () => {
    const client = createRedis(server.url, 'outage-test');
    client.on('error', () => undefined);
    await once(client, 'ready');
    const s = new HealthStore(client);
    await s.recordHeartbeat('out', ['a'], 1);
    await server.stop();
    const t0 = Date.now();
    await expect(s.recordHeartbeat('out', ['a'], 2)).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(2000);
    await server.restart();
    await once(client, 'ready'); // reconnects by itself
    await s.recordHeartbeat('out', ['a'], 3);
    expect(Object.fromEntries(await s.heartbeats('out', ['a'], 4))).toEqual({ a: 3 });
    client.disconnect();
    redis.disconnect();
    redis = new Redis(server.url);
  });
});
