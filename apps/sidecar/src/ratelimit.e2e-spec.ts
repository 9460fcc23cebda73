import { setTimeout as sleep } from 'node:timers/promises';
import type { PolicyInput } from '@novamesh/contracts';
import { waitFor } from '@novamesh/testing';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type EchoApp, parallel, type SidecarProcess, TestMesh } from './mesh.e2e-helper';

// One mesh for the file: service quota runs four workloads, each behind its own sidecar, which
// enforce quota's RateLimitPolicies on their inbound side (global limits shared through the mesh's
// redis-server); alpha and beta call quota through their sidecars (mTLS, so quota sees their
// SPIFFE IDs); busy has a sidecar that sheds load beyond 4 requests in flight.
let m: TestMesh;
const quota: SidecarProcess[] = [];
let alpha: SidecarProcess;
let beta: SidecarProcess;
let busy: SidecarProcess;
let busyApp: EchoApp;

const policies: PolicyInput[] = [
  {
    kind: 'RateLimitPolicy',
    name: 'quota-local',
    serviceName: 'quota',
    limits: [{ name: 'local', requests: 20, per: 'second', burst: 20, match: { path: { prefix: '/local' } } }],
  },
  {
    kind: 'RateLimitPolicy',
    name: 'quota-global',
    serviceName: 'quota',
    failureMode: 'open',
    limits: [
      { name: 'shared', scope: 'global', requests: 100, per: 'second', match: { path: { prefix: '/global' } } },
      {
        name: 'per-caller',
        scope: 'global',
        requests: 10,
        per: 'minute',
        key: { type: 'source-identity' },
        match: { path: { prefix: '/keyed' } },
      },
    ],
  },
  {
    kind: 'RateLimitPolicy',
    name: 'quota-closed',
    serviceName: 'quota',
    failureMode: 'closed',
    response: { status: 503, sendHeaders: true },
    limits: [{ name: 'strict', scope: 'global', requests: 1000, per: 'second', match: { path: { prefix: '/closed' } } }],
  },
];

/** A plaintext request straight to a sidecar's inbound port. */
async function get(sc: SidecarProcess, path: string) {
  const t0 = performance.now();
  const r = await request(`${sc.inbound}${path}`);
  await r.body.dump();
  return { status: r.statusCode, headers: r.headers, ms: performance.now() - t0 };
}

const count = <T>(xs: T[], ok: (x: T) => boolean) => xs.filter(ok).length;

beforeAll(async () => {
  m = await TestMesh.start();
  for (const p of policies) expect((await m.mesh.applyPolicy(p)).ok).toBe(true);
  const env = { REDIS_URL: m.redis.url };
  busyApp = await m.app('busy');
  const started = await Promise.all([
    // What these show is the shared counter's precision, not how long a decision may wait: with the
    // default 100 ms, a machine whose CPU the host steals lets some decisions time out and fail open.
    ...['q1', 'q2', 'q3', 'q4'].map(async (name) =>
      m.sidecar('quota', await m.app(name), { env: { ...env, SIDECAR_RATE_LIMIT_TIMEOUT: '1s' } }),
    ),
    m.sidecar('alpha', await m.app('alpha'), { env: { ...env, SIDECAR_UPSTREAMS: 'quota' } }),
    m.sidecar('beta', await m.app('beta'), { env: { ...env, SIDECAR_UPSTREAMS: 'quota' } }),
    m.sidecar('busy', busyApp, { env: { SIDECAR_MAX_IN_FLIGHT: '4' } }),
  ]);
  quota.push(...started.slice(0, 4));
  [alpha, beta, busy] = started.slice(4) as [SidecarProcess, SidecarProcess, SidecarProcess];
  await Promise.all([
    ...quota.map((sc) =>
      m.until(sc, 'three rate limit policies', (d) => (d.snapshot?.inbound as { rateLimits?: unknown[] })?.rateLimits?.length === 3),
    ),
    ...[alpha, beta].map((sc) =>
      m.until(
        sc,
        'four quota endpoints and a certificate',
        (d) => d.snapshot?.upstreams[0]?.endpoints.length === 4 && d.certificate !== null,
      ),
    ),
    m.until(busy, 'a snapshot', (d) => d.snapshot !== null),
  ]);
}, 60_000);

afterAll(async () => {
  await m?.dispose();
});

describe('local limits', () => {
  it('20 per second, burst 20: the rest get 429 with Retry-After and RateLimit headers', async () => {
    const started = performance.now();
    const results = await parallel(40, 40, () => get(quota[0] as SidecarProcess, '/local'));
    const elapsedSeconds = (performance.now() - started) / 1000;
    const ok = count(results, (r) => r.status === 200);
    expect(ok).toBeGreaterThanOrEqual(20);
    // The burst of 20, plus what the bucket refilled (20 per second) while the 40 requests were
    // being answered: on a busy machine that takes a while, so the bound follows the elapsed time.
    expect(ok).toBeLessThanOrEqual(20 + Math.ceil(20 * elapsedSeconds));
    expect(ok).toBeLessThan(40);
    const refused = results.filter((r) => r.status !== 200);
    for (const r of refused) {
      expect(r.status).toBe(429);
      expect(r.headers).toMatchObject({
        'x-novamesh-error': 'RATE_LIMITED',
        'retry-after': '1',
        'ratelimit-limit': '20',
        'ratelimit-remaining': '0',
        'ratelimit-reset': '1',
      });
      expect(r.headers['x-novamesh-reason']).toContain('quota-local/local');
    }
    // Local means per sidecar: another sidecar of the service has its own bucket.
    expect((await get(quota[1] as SidecarProcess, '/local')).status).toBe(200);
    // Requests the limit does not match are not limited.
    expect(count(await parallel(30, 30, () => get(quota[0] as SidecarProcess, '/other')), (r) => r.status === 200)).toBe(30);
  });
});

describe('global limits', () => {
  it('100 per second shared by 4 sidecars under ~1,000 requests per second admits 100 ± 5 % per second', async () => {
    // Counted in the limiter's own windows (Redis's clock), read from its counter in redis-server as
    // the run goes: the window a request falls in is the one its decision reached Redis in, which the
    // client's clock can only guess (a request sent in the last milliseconds of a second is decided
    // in the next on a loaded machine).
    const redis = new Redis(m.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    const storeErrors = async () =>
      (
        await Promise.all(
          quota.map(async (sc) =>
            Number((await sc.admin<string>('/metrics')).body.match(/^novamesh_sidecar_rate_limit_store_errors_total (\d+)/m)?.[1] ?? 0),
          ),
        )
      ).reduce((a, b) => a + b, 0);
    try {
      let ok = 0;
      let other = 0;
      const pending: Promise<void>[] = [];
      // Open connections to every sidecar first: connection setup delays the first responses into the next second.
      await parallel(40, 40, (i) => get(quota[i % 4] as SidecarProcess, '/other'));
      const errorsBefore = await storeErrors();
      /** Per window index: requests admitted in it (its count, final once the next window carries it as the previous one). */
      const windows = new Map<number, number>();
      let key: string | undefined;
      let first: number | undefined;
      const readCounter = async () => {
        key ??= (await redis.keys('novamesh:rl:quota:quota-global/shared:*'))[0];
        if (!key) return;
        const [w, c, p] = await redis.hmget(key, 'w', 'c', 'p');
        if (w == null) return; // expired between reads
        const index = Number(w);
        first ??= index;
        windows.set(index, Number(c ?? 0));
        // The previous window's final count, also when the loop never read that window itself: a stall,
        // or the first read coming after the run's first window was over (only this run counts under
        // this key, so a previous window with admissions is one of the run's).
        const previous = Number(p ?? 0);
        if (index - 1 >= first || previous > 0) windows.set(index - 1, previous);
      };
      const t0 = Date.now();
      const runMs = 5_200;
      let sent = 0;
      let lastRead = 0;
      while (Date.now() - t0 < runMs) {
        const due = Date.now() - t0; // one request per ms on average, spread round-robin over the sidecars
        for (; sent < due; sent++) {
          const sc = quota[sent % 4] as SidecarProcess;
          pending.push(
            get(sc, '/global').then((r) => {
              if (r.status === 200) ok++;
              else if (r.status !== 429) other++;
            }),
          );
        }
        if (due - lastRead >= 100) {
          lastRead = due;
          await readCounter();
        }
        await sleep(5);
      }
      await Promise.all(pending);
      await readCounter(); // the last window's count: no request comes after
      const offered = sent / (runMs / 1000);
      const indices = [...windows.keys()].sort((a, b) => a - b);
      const counted = indices.reduce((a, w) => a + (windows.get(w) ?? 0), 0);
      const failedOpen = (await storeErrors()) - errorsBefore;
      // Whole windows only, after one of warm-up: the first and last windows of the run are partial.
      const whole = indices.slice(2, -1).map((w) => windows.get(w) ?? 0);
      console.log(
        `global limit: offered ${Math.round(offered)} req/s; admitted per whole window ${whole.join(', ')} (${indices.map((w) => windows.get(w)).join(', ')}); 200s ${ok}, counted ${counted}, store errors ${failedOpen}`,
      );
      expect(other).toBe(0);
      expect(offered).toBeGreaterThan(800);
      // The windows seen are consecutive, and every 200 the clients got is one the shared counter
      // holds, or one admitted because its decision failed (failing open): a decision that timed
      // out in the sidecar may still have been counted in Redis, so those may be counted or not.
      expect((indices.at(-1) ?? 0) - (indices[0] ?? 0)).toBe(indices.length - 1);
      expect(ok).toBeGreaterThanOrEqual(counted);
      expect(ok).toBeLessThanOrEqual(counted + failedOpen);
      expect(failedOpen).toBeLessThan(sent / 100);
      expect(whole.length).toBeGreaterThanOrEqual(3);
      for (const n of whole) {
        expect(n).toBeGreaterThanOrEqual(95);
        expect(n).toBeLessThanOrEqual(105);
      }
    } finally {
      redis.disconnect();
    }
  });

  it('keyed by source identity: each caller gets its own budget', async () => {
    const statuses = async (sc: SidecarProcess) => {
      const out: number[] = [];
      for (let i = 0; i < 14; i++) out.push((await call(sc, 'quota', '/keyed')).status);
      return out;
    };
    // 10 per minute, counted in windows aligned to the minute (Redis's clock, this machine's): across
    // a boundary the sliding window rounds the previous minute's share down and admits one more
    // (what a CI run saw: 11 of 14). Stay inside one window.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 55_000) await new Promise((r) => setTimeout(r, 60_000 - intoMinute + 200));
    const a = await statuses(alpha);
    const refused = await call(alpha, 'quota', '/keyed');
    const b = await statuses(beta);
    expect(count(a, (s) => s === 200)).toBe(10);
    expect(count(a, (s) => s === 429)).toBe(4);
    expect(count(b, (s) => s === 200)).toBe(10);
    expect(count(b, (s) => s === 429)).toBe(4);
    expect(refused.status).toBe(429);
    expect(refused.headers['x-novamesh-error']).toBe('RATE_LIMITED');
    expect(refused.headers['x-novamesh-reason']).toContain('quota-global/per-caller');
    expect(refused.headers['ratelimit-limit']).toBe('10');
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('admitted responses carry RateLimit-* of the tightest selected limit with sendHeaders, also through the calling sidecar', async () => {
    const remaining = (h: Record<string, unknown>) => Number(h['ratelimit-remaining']);
    // Global (quota-closed/strict, 1,000 per second across the service): nothing else asks for /closed here.
    for (const r of [await get(quota[2] as SidecarProcess, '/closed'), await call(alpha, 'quota', '/closed')]) {
      expect(r.status).toBe(200);
      expect(r.headers).toMatchObject({ 'ratelimit-limit': '1000', 'ratelimit-reset': '1' });
      expect(remaining(r.headers)).toBeGreaterThanOrEqual(990);
      expect(remaining(r.headers)).toBeLessThan(1000);
      expect(r.headers['retry-after']).toBeUndefined();
    }
    // Local (quota-local/local, a full bucket of 20 in this sidecar): 19 left, full again within a second.
    const local = await get(quota[3] as SidecarProcess, '/local');
    expect(local.status).toBe(200);
    expect(local.headers).toMatchObject({ 'ratelimit-limit': '20', 'ratelimit-remaining': '19', 'ratelimit-reset': '1' });
    // No limit selects /other: nothing added.
    expect((await get(quota[3] as SidecarProcess, '/other')).headers['ratelimit-limit']).toBeUndefined();
  });

  it('Redis stopped: failureMode open lets everything through, closed refuses with a reason; Redis back: limits resume', async () => {
    const across = (n: number, path: string) => parallel(n, 30, (i) => get(quota[i % 4] as SidecarProcess, path));
    // Log lines of this outage only (each sidecar's output from now on).
    const marks = quota.map((sc) => sc.proc.output.length);
    const logged = (i: number, text: string) => count((quota[i] as SidecarProcess).proc.output.slice(marks[i]), (l) => l.includes(text));
    await m.redis.stop();
    await sleep(300);

    const open = await across(300, '/global');
    expect(count(open, (r) => r.status === 200)).toBe(300);
    const closed = await across(40, '/closed');
    for (const r of closed) {
      expect(r.status).toBe(503);
      expect(r.headers['x-novamesh-error']).toBe('RATE_LIMITED');
      expect(r.headers['x-novamesh-reason']).toContain('unreachable');
      expect(r.ms).toBeLessThan(250);
    }
    for (let i = 0; i < 4; i++) expect(logged(i, 'rate limit store (Redis) unreachable')).toBe(1);

    await m.redis.restart();
    await waitFor(async () => (await get(quota[0] as SidecarProcess, '/closed')).status === 200, {
      timeoutMs: 10_000,
      intervalMs: 100,
      what: 'limits back',
    });
    await waitFor(async () => (await Promise.all(quota.map((sc) => get(sc, '/closed')))).every((r) => r.status === 200), {
      timeoutMs: 10_000,
      intervalMs: 100,
      what: 'every sidecar back',
    });
    const after = await across(300, '/global');
    const ok = count(after, (r) => r.status === 200);
    expect(ok).toBeGreaterThanOrEqual(95);
    expect(ok).toBeLessThanOrEqual(205); // the burst may straddle two windows
    expect(count(after, (r) => r.status === 429)).toBe(300 - ok);
    for (let i = 0; i < 4; i++) {
      expect(logged(i, 'rate limit store (Redis) unreachable')).toBe(1);
      expect(logged(i, 'reachable again')).toBe(1);
    }
  });
});

describe('load shedding', () => {
  it('SIDECAR_MAX_IN_FLIGHT 4: of 12 concurrent slow requests 8 get 503 OVERLOADED at once', async () => {
    busyApp.delayMs = 500;
    const results = await Promise.all(Array.from({ length: 12 }, () => get(busy, '/')));
    busyApp.delayMs = 0;
    expect(count(results, (r) => r.status === 200)).toBe(4);
    const shed = results.filter((r) => r.status !== 200);
    expect(shed).toHaveLength(8);
    for (const r of shed) {
      expect(r.status).toBe(503);
      expect(r.headers['x-novamesh-error']).toBe('OVERLOADED');
      expect(r.ms).toBeLessThan(250);
    }
    expect((await get(busy, '/')).status).toBe(200);
  });
});
