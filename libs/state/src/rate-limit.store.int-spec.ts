import { TestRedis } from '@novamesh/testing';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisKeys } from './keys';
import { type RateLimitOutcome, RateLimitStore } from './rate-limit.store';
import { createRequestPathRedis } from './redis';

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

/** EVALSHA and EVAL calls redis-server has executed so far. */
async function scriptCalls(): Promise<number> {
  const info = await redis.info('commandstats');
  return [...info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
}

const concurrently = (n: number, call: () => Promise<RateLimitOutcome>) => Promise.all(Array.from({ length: n }, call));

describe('RateLimitStore batching', () => {
  it('one script call decides requests of one event-loop turn: min(n, limit) admitted in order, the rest refused with a retry', async () => {
    const store = new RateLimitStore(redis, 'svc');
    await store.consume([win('p/warm', 1)]); // ioredis loads the script (EVAL, then EVALSHA) on the first call
    for (const [n, limit] of [
      [30, 10],
      [10, 10],
      [5, 10],
    ] as const) {
      const before = await scriptCalls();
      const outcomes = await concurrently(n, () => store.consume([win(`p/batch-${n}`, limit, 60_000)]));
      expect(await scriptCalls()).toBe(before + 1);
      const admitted = outcomes.filter((o) => o.allowed);
      expect(admitted).toHaveLength(Math.min(n, limit));
      // The first k in call order, each told what is left after it.
      expect(outcomes.slice(0, admitted.length)).toEqual(admitted);
      expect(admitted.map((o) => o.remaining[0])).toEqual(admitted.map((_, j) => limit - 1 - j));
      for (const o of outcomes.slice(admitted.length)) {
        expect(o).toMatchObject({ allowed: false, refused: 0, remaining: [0] });
        expect(o.retryAfterMs).toBeGreaterThan(0);
        expect(o.resetMs).toBeGreaterThanOrEqual(o.retryAfterMs);
      }
      expect(await redis.hget(redisKeys.rateLimit('svc', `p/batch-${n}`, ''), 'c')).toBe(String(Math.min(n, limit)));
    }
  });

  it('counts the keys and window sets of one turn apart, one script call each', async () => {
    const store = new RateLimitStore(redis, 'svc', { now: () => 90_000_000 });
    const before = await scriptCalls();
    const calls: [string, Promise<RateLimitOutcome>][] = [];
    for (let i = 0; i < 12; i++) {
      calls.push(['a', store.consume([win('p/mixed', 4, 1000, 'a')])]);
      calls.push(['b', store.consume([win('p/mixed', 4, 1000, 'b')])]);
      calls.push(['ab', store.consume([win('p/mixed', 4, 1000, 'a'), win('p/mixed-wide', 100)])]);
    }
    const outcomes = await Promise.all(calls.map(async ([k, p]) => [k, await p] as const));
    expect(await scriptCalls()).toBe(before + 3);
    const of = (k: string) => outcomes.filter(([x]) => x === k).map(([, o]) => o);
    // 'a' and 'ab' share key a's budget of 4; 'a' was queued first, so its batch was sent first and took it.
    expect(of('a').filter((o) => o.allowed)).toHaveLength(4);
    expect(of('b').filter((o) => o.allowed)).toHaveLength(4);
    for (const o of of('ab')) expect(o).toMatchObject({ allowed: false, refused: 0, remaining: [0, 100] });
    expect(await redis.hget(redisKeys.rateLimit('svc', 'p/mixed', 'a'), 'c')).toBe('4');
    expect(await redis.hget(redisKeys.rateLimit('svc', 'p/mixed', 'b'), 'c')).toBe('4');
    expect(await redis.exists(redisKeys.rateLimit('svc', 'p/mixed-wide', ''))).toBe(0); // refused: counted in no window
  });

  it('queues behind a call in flight and sends what queued in one call when it completes', async () => {
    const store = new RateLimitStore(redis, 'svc');
    const before = await scriptCalls();
    const first = store.consume([win('p/queued', 100, 60_000)]);
    await new Promise((r) => setImmediate(r)); // the first is sent
    const rest = concurrently(20, () => store.consume([win('p/queued', 100, 60_000)]));
    expect((await first).remaining).toEqual([99]);
    expect((await rest).map((o) => o.remaining[0])).toEqual(Array.from({ length: 20 }, (_, j) => 98 - j));
    expect(await scriptCalls()).toBe(before + 2);
  });

  it('a batch is the same as its requests one after another at the same instant (property)', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 1500 }), fc.integer({ min: 1, max: 12 }), fc.boolean()), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 10 }),
        async (steps, limitA, limitB) => {
          run++;
          let now = 20_000_000;
          const clock = { now: () => now };
          const batched = new RateLimitStore(redis, `prop-batch-${run}`, clock);
          const oneByOne = new RateLimitStore(redis, `prop-seq-${run}`, clock);
          for (const [dt, n, both] of steps) {
            now += dt;
            const windows = both ? [win('p/a', limitA), win('p/b', limitB, 2000, 'k')] : [win('p/a', limitA)];
            const together = await concurrently(n, () => batched.consume(windows));
            const alone: RateLimitOutcome[] = [];
            for (let i = 0; i < n; i++) alone.push(await oneByOne.consume(windows));
            expect(together).toEqual(alone);
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('Redis stopped: every queued request is rejected at once; Redis hanging: the batch and those queued behind it after the command timeout', async () => {
    const own = await TestRedis.start();
    const client = createRequestPathRedis(own.url, 'rate-limit-spec');
    try {
      await new Promise((resolve) => client.once('ready', resolve));
      const store = new RateLimitStore(client, 'svc');
      expect((await store.consume([win('p/down', 10)])).allowed).toBe(true);

      // Hanging: CLIENT PAUSE holds every script; the one in flight times out (100 ms) and takes the queue with it.
      const admin = new Redis(own.url);
      await admin.client('PAUSE', 2000, 'WRITE');
      const t0 = performance.now();
      const rejectedAt = (p: Promise<unknown>) =>
        p.then(
          () => Number.NaN,
          () => performance.now() - t0,
        );
      const first = rejectedAt(store.consume([win('p/down', 10)]));
      await new Promise((r) => setImmediate(r)); // sent
      const queued = await Promise.all(Array.from({ length: 20 }, () => rejectedAt(store.consume([win('p/down', 10)]))));
      const failed = await first;
      expect(failed).toBeGreaterThanOrEqual(95);
      expect(failed).toBeLessThan(250);
      // Rejected with the call they queued behind, not after a timeout of their own.
      for (const at of queued) expect(at - failed).toBeLessThan(50);
      await admin.client('UNPAUSE');
      admin.disconnect();

      // Stopped: the client knows at once, so nothing waits.
      await own.stop();
      await new Promise((r) => setTimeout(r, 100));
      const t1 = performance.now();
      const down = await Promise.allSettled(Array.from({ length: 50 }, () => store.consume([win('p/down', 10)])));
      expect(down.every((r) => r.status === 'rejected')).toBe(true);
      expect(performance.now() - t1).toBeLessThan(50);
    } finally {
      client.disconnect();
      await own.dispose();
    }
  });
});
