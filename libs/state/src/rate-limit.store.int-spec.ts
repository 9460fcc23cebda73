import { TestRedis } from '@novamesh/testing';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisKeys } from './keys';
import { RateLimitStore } from './rate-limit.store';

let server: TestRedis;
let redis: Redis;

beforeAll(async () => {
  server = await TestRedis.start();
  redis = new Redis(server.url);
});
afterAll(async () => {
  redis.disconnect();
  await server?.dispose();
});

const win = (limit: string, requests: number, windowMs = 1000, key = '') => ({ limit, key, requests, windowMs });

describe('RateLimitStore against a real Redis', () => {
  it('admits exactly the limit per window among many concurrent decisions', async () => {
    const store = new RateLimitStore(redis, 'svc');
    // A minute window, so the burst cannot straddle two windows.
    const outcomes = await Promise.all(Array.from({ length: 500 }, () => store.consume([win('p/concurrent', 100, 60_000)])));
    expect(outcomes.filter((o) => o.allowed)).toHaveLength(100);
    const refused = outcomes.find((o) => !o.allowed);
    expect(refused).toMatchObject({ refused: 0 });
    expect(refused?.retryAfterMs).toBeGreaterThan(0);
    expect(refused?.resetMs).toBeGreaterThanOrEqual(refused?.retryAfterMs ?? 0);
    // Sidecars share it: a second client sees the same count.
    const other = new Redis(server.url);
    expect((await new RateLimitStore(other, 'svc').consume([win('p/concurrent', 100, 60_000)])).allowed).toBe(false);
    other.disconnect();
  });

  it('keeps the documented key with a TTL of two windows', async () => {
    const store = new RateLimitStore(redis, 'svc');
    await store.consume([win('p/ttl', 5, 1000, 'spiffe://mesh/ns/default/svc/web')]);
    const key = 'novamesh:rl:svc:p/ttl:spiffe://mesh/ns/default/svc/web';
    expect(redisKeys.rateLimit('svc', 'p/ttl', 'spiffe://mesh/ns/default/svc/web')).toBe(key);
    const ttl = await redis.pttl(key);
    expect(ttl).toBeGreaterThan(1500);
    expect(ttl).toBeLessThanOrEqual(2000);
    expect(redisKeys.rateLimit('svc', 'p/l', 'x'.repeat(500))).toMatch(/^novamesh:rl:svc:p\/l:sha256:[0-9a-f]{64}$/);
  });

  it('slides: the previous window weighs less as the current one passes', async () => {
    let now = 10_000_000; // window index 10,000 of 1 s windows
    const store = new RateLimitStore(redis, 'svc', { now: () => now });
    const take = async (n: number) => {
      let ok = 0;
      for (let i = 0; i < n; i++) if ((await store.consume([win('p/slide', 10)])).allowed) ok++;
      return ok;
    };
    expect(await take(15)).toBe(10);
    now += 1000; // start of the next window: the previous 10 weigh fully
    const refused = await store.consume([win('p/slide', 10)]);
    expect(refused).toMatchObject({ allowed: false, refused: 0 });
    expect(refused.retryAfterMs).toBe(1); // floor(10 * (1000 - e) / 1000) + 0 + 1 <= 10 from e = 1
    now += 500; // half way: the previous 10 count as 5
    expect(await take(10)).toBe(5);
    now += 100; // 60 %: they count as 4
    expect(await take(3)).toBe(1);
    now += 1400; // two windows later nothing counts any more
    expect(await take(12)).toBe(10);
  });

  it('counts a request in every window or in none', async () => {
    const store = new RateLimitStore(redis, 'svc', { now: () => 50_000_000 });
    const both = [win('p/wide', 100, 60_000), win('p/narrow', 2, 60_000, 'k')];
    expect((await store.consume(both)).allowed).toBe(true);
    expect((await store.consume(both)).allowed).toBe(true);
    expect(await store.consume(both)).toMatchObject({ allowed: false, refused: 1 });
    expect(await redis.hget(redisKeys.rateLimit('svc', 'p/wide', ''), 'c')).toBe('2');
  });

  it('keys count separately', async () => {
    const store = new RateLimitStore(redis, 'svc', { now: () => 70_000_000 });
    const a = await Promise.all(Array.from({ length: 5 }, () => store.consume([win('p/keyed', 3, 1000, 'a')])));
    const b = await Promise.all(Array.from({ length: 5 }, () => store.consume([win('p/keyed', 3, 1000, 'b')])));
    expect(a.filter((o) => o.allowed)).toHaveLength(3);
    expect(b.filter((o) => o.allowed)).toHaveLength(3);
  });
});
