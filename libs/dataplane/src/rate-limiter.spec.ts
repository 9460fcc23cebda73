import { RateLimitPolicySchema } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { compileRateLimits, type GlobalRateLimitStore, type GlobalRateLimitWindow, RateLimiter } from './rate-limiter';
import type { RequestView } from './request-view';

const policy = (p: Record<string, unknown>) => RateLimitPolicySchema.parse({ kind: 'RateLimitPolicy', serviceName: 'orders', ...p });
const req = (over: Partial<RequestView> = {}): RequestView => ({ method: 'GET', path: '/orders/1', query: '', headers: {}, ...over });

/** A limiter with a clock the test moves. */
function local(limits: Record<string, unknown>[], extra: Record<string, unknown> = {}) {
  const clock = { t: 0, now: () => clock.t };
  return { clock, limiter: new RateLimiter([policy({ name: 'rl', limits, ...extra })], { clock }) };
}
const admitted = (l: RateLimiter, n: number, r: RequestView = req()) =>
  Array.from({ length: n }, () => l.check(r)).filter((x) => x === undefined || ('allowed' in x && x.allowed)).length;

describe('compileRateLimits', () => {
  it('is undefined without policies, so the plain path skips it', () => {
    expect(compileRateLimits([])).toBeUndefined();
  });

  it('refuses beyond the burst with the policy status and draft RateLimit headers, naming policy and limit', () => {
    const { clock, limiter } = local([{ name: 'per-sidecar', requests: 20, per: 'second', burst: 25 }]);
    expect(admitted(limiter, 30)).toBe(25);
    expect(limiter.check(req())).toEqual({
      allowed: false,
      policy: 'rl',
      limit: 'per-sidecar',
      status: 429,
      reason: 'rate limit rl/per-sidecar exceeded (20 per second, in each sidecar)',
      headers: { 'retry-after': '1', 'ratelimit-limit': '20', 'ratelimit-remaining': '0', 'ratelimit-reset': '2' },
    });
    clock.t = 100; // two tokens back
    expect(admitted(limiter, 5)).toBe(2);
  });

  it('uses the response status and leaves headers out when sendHeaders is false', () => {
    const { limiter } = local([{ name: 'one', requests: 1, per: 'minute' }], { response: { status: 503, sendHeaders: false } });
    expect(limiter.check(req())).toBeUndefined();
    expect(limiter.check(req())).toMatchObject({ status: 503, headers: {} });
  });

  it('per minute: the Retry-After covers the wait for one token', () => {
    const { limiter } = local([{ name: 'slow', requests: 6, per: 'minute' }]);
    expect(admitted(limiter, 10)).toBe(6);
    expect(limiter.check(req())).toMatchObject({ headers: { 'retry-after': '10', 'ratelimit-reset': '60' } });
  });

  it('applies a limit only to the requests its match selects', () => {
    const { limiter } = local([
      {
        name: 'writes',
        requests: 2,
        per: 'second',
        match: { methods: ['POST'], path: { prefix: '/orders' }, queryParams: { dry: { exact: 'no' } } },
      },
    ]);
    expect(admitted(limiter, 5, req({ method: 'GET' }))).toBe(5);
    expect(admitted(limiter, 5, req({ method: 'POST', query: 'dry=yes' }))).toBe(5);
    expect(admitted(limiter, 5, req({ method: 'POST', query: 'dry=no' }))).toBe(2);
  });

  it('gives each key value its own budget: source identity, header, path, client IP; requests without one share a budget', () => {
    const cases: [Record<string, unknown>, (v: string) => Partial<RequestView>][] = [
      [{ type: 'source-identity' }, (v) => ({ principal: `spiffe://mesh/ns/default/svc/${v}` })],
      [{ type: 'header', name: 'X-Tenant' }, (v) => ({ headers: { 'x-tenant': v } })],
      [{ type: 'path' }, (v) => ({ path: `/${v}` })],
      [{ type: 'client-ip' }, (v) => ({ sourceIp: `10.0.0.${v.length}` })],
    ];
    for (const [key, make] of cases) {
      const { limiter } = local([{ name: 'k', requests: 3, per: 'second', key }]);
      expect(admitted(limiter, 5, req(make('a')))).toBe(3);
      expect(admitted(limiter, 5, req(make('bb')))).toBe(3);
      expect(admitted(limiter, 5, req())).toBe(3); // lacks the key: one shared budget
      expect(admitted(limiter, 1, req())).toBe(0);
    }
  });

  it('forgets the oldest key beyond maxKeysPerLimit', () => {
    const limiter = new RateLimiter([policy({ name: 'rl', limits: [{ name: 'k', requests: 1, per: 'minute', key: { type: 'path' } }] })], {
      clock: { now: () => 0 },
      maxKeysPerLimit: 2,
    });
    for (const p of ['/a', '/b', '/c']) expect(limiter.check(req({ path: p }))).toMatchObject({ allowed: true });
    expect(limiter.check(req({ path: '/c' }))).toMatchObject({ allowed: false });
    expect(limiter.check(req({ path: '/a' }))).toMatchObject({ allowed: true }); // forgotten, back full
  });

  it('counts local limits all or nothing: a request one limit refuses costs the others nothing', () => {
    const { limiter } = local([
      { name: 'wide', requests: 10, per: 'minute' },
      { name: 'narrow', requests: 1, per: 'minute', match: { path: { exact: '/x' } } },
    ]);
    expect(limiter.check(req({ path: '/x' }))).toMatchObject({ allowed: true });
    for (let i = 0; i < 5; i++) expect(limiter.check(req({ path: '/x' }))).toMatchObject({ limit: 'narrow' });
    expect(admitted(limiter, 20)).toBe(9);
  });
});

describe('RateLimit headers on admitted requests', () => {
  const hdrs = (limit: number, remaining: number, reset: number) => ({
    allowed: true,
    headers: { 'ratelimit-limit': String(limit), 'ratelimit-remaining': String(remaining), 'ratelimit-reset': String(reset) },
  });

  it('local: the tokens left (rounded down) and the seconds until the bucket is full again', () => {
    const { clock, limiter } = local([{ name: 'per-sidecar', requests: 20, per: 'second', burst: 25 }]);
    expect(limiter.check(req())).toEqual(hdrs(20, 24, 1)); // one token back in 50 ms
    for (let i = 0; i < 19; i++) limiter.check(req());
    expect(limiter.check(req())).toEqual(hdrs(20, 4, 2)); // 21 tokens to refill at 20 per second: 1.05 s
    clock.t = 30; // 0.6 of a token back: 4.6 → 3.6 after this request
    expect(limiter.check(req())).toEqual(hdrs(20, 3, 2));
  });

  it('the tightest selected limit with sendHeaders speaks; limits without it are neither shown nor counted as tightest', () => {
    const limiter = new RateLimiter(
      [
        policy({ name: 'quiet', response: { status: 429, sendHeaders: false }, limits: [{ name: 'one', requests: 1, per: 'minute' }] }),
        policy({
          name: 'rl',
          limits: [
            { name: 'wide', requests: 10, per: 'minute' },
            { name: 'narrow', requests: 3, per: 'minute', match: { path: { exact: '/x' } } },
          ],
        }),
      ],
      { clock: { now: () => 0 } },
    );
    expect(limiter.check(req({ path: '/x' }))).toEqual(hdrs(3, 2, 20)); // narrow: 1 of 3 per minute back in 20 s
    expect(limiter.check(req({ path: '/y' }))).toMatchObject({ allowed: false, policy: 'quiet', headers: {} });
  });

  it('without any sendHeaders an admitted request is undefined (nothing allocated)', () => {
    const { limiter } = local([{ name: 'a', requests: 5, per: 'second' }], { response: { status: 429, sendHeaders: false } });
    expect(limiter.check(req())).toBeUndefined();
  });

  it('global: the remaining count the store reports, the window end as reset; the lower of local and global wins', async () => {
    const windows: GlobalRateLimitWindow[][] = [];
    const left = [50, 3];
    const limiter = new RateLimiter(
      [
        policy({
          name: 'g',
          limits: [
            { name: 'all', scope: 'global', requests: 100, per: 'second' },
            { name: 'callers', scope: 'global', requests: 5, per: 'minute', match: { path: { prefix: '/api' } } },
            { name: 'local', requests: 4, per: 'minute', match: { path: { prefix: '/api/small' } } },
          ],
        }),
      ],
      {
        clock: { now: () => 0 },
        store: () => ({
          consume: async (w) => {
            windows.push(w);
            return { allowed: true, refused: -1, retryAfterMs: 0, resetMs: 0, remaining: left.slice(0, w.length), now: 1_000_250 };
          },
        }),
      },
    );
    expect(await limiter.check(req({ path: '/other' }))).toEqual(hdrs(100, 50, 1)); // 750 ms left of the second
    expect(await limiter.check(req({ path: '/api/x' }))).toEqual(hdrs(5, 3, 20)); // 19.75 s left of the minute
    expect(await limiter.check(req({ path: '/api/small' }))).toEqual(hdrs(4, 3, 15)); // local has 3 left too: a tie keeps the local one, checked first
    expect(await limiter.check(req({ path: '/api/small' }))).toEqual(hdrs(4, 2, 30));
    expect(windows).toHaveLength(4);
  });

  it('the store unreachable with failureMode open: the local limits still give their headers', async () => {
    const limiter = new RateLimiter(
      [
        policy({
          name: 'g',
          limits: [
            { name: 'all', scope: 'global', requests: 100, per: 'second' },
            { name: 'local', requests: 60, per: 'minute' },
          ],
        }),
      ],
      { clock: { now: () => 0 }, store: () => ({ consume: () => Promise.reject(new Error('Connection is closed')) }) },
    );
    expect(await limiter.check(req())).toEqual(hdrs(60, 59, 1));
  });
});

describe('global limits', () => {
  const store = (answer: (w: GlobalRateLimitWindow[]) => ReturnType<GlobalRateLimitStore['consume']>) => {
    const calls: GlobalRateLimitWindow[][] = [];
    return {
      calls,
      store: {
        consume: (w: GlobalRateLimitWindow[]) => {
          calls.push(w);
          return answer(w);
        },
      },
    };
  };
  const globals = (failureMode: 'open' | 'closed', s: GlobalRateLimitStore) =>
    new RateLimiter(
      [
        policy({
          name: 'g',
          failureMode,
          limits: [
            { name: 'all', scope: 'global', requests: 100, per: 'second' },
            {
              name: 'callers',
              scope: 'global',
              requests: 5,
              per: 'minute',
              key: { type: 'source-identity' },
              match: { path: { prefix: '/api' } },
            },
          ],
        }),
      ],
      { store: () => s },
    );

  it('asks the store once per request, for every global limit the request matches, and answers synchronously when none does', async () => {
    const s = store(async (w) => ({
      allowed: w.length === 1,
      refused: 1,
      retryAfterMs: 1500,
      resetMs: 30_000,
      remaining: w.map(() => 7),
      now: 0,
    }));
    const l = globals('open', s.store);
    expect(await l.check(req({ path: '/health' }))).toEqual({
      allowed: true,
      headers: { 'ratelimit-limit': '100', 'ratelimit-remaining': '7', 'ratelimit-reset': '1' },
    });
    expect(await l.check(req({ path: '/api/x', principal: 'spiffe://m/ns/a/svc/web' }))).toMatchObject({
      limit: 'callers',
      headers: { 'retry-after': '2', 'ratelimit-limit': '5', 'ratelimit-reset': '30' },
    });
    expect(s.calls[1]).toEqual([
      { limit: 'g/all', key: '', requests: 100, windowMs: 1000 },
      { limit: 'g/callers', key: 'spiffe://m/ns/a/svc/web', requests: 5, windowMs: 60_000 },
    ]);
    const noGlobal = new RateLimiter([
      policy({ name: 'l', limits: [{ name: 'x', requests: 1, per: 'second', match: { path: { exact: '/x' } } }] }),
    ]);
    expect(noGlobal.check(req())).toBeUndefined();
  });

  it('follows failureMode when the store is unreachable', async () => {
    const down = store(() => Promise.reject(new Error('Connection is closed')));
    expect(await globals('open', down.store).check(req())).toBeUndefined();
    expect(await globals('closed', down.store).check(req())).toMatchObject({
      status: 429,
      reason: "rate limit g/all: the rate limit store (Redis) is unreachable and the policy's failureMode is closed",
    });
  });

  it('needs a store only when a limit is global', () => {
    expect(() => new RateLimiter([policy({ name: 'g', limits: [{ name: 'a', scope: 'global', requests: 1, per: 'second' }] })])).toThrow(
      /need a store/,
    );
  });
});
