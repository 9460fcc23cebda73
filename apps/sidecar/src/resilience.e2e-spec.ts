import type { PolicyInput } from '@novamesh/contracts';
import { waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type EchoApp, parallel, type SidecarProcess, TestMesh } from './mesh.e2e-helper';

// One mesh for the file: web calls api (three workloads a1–a3, each behind its own sidecar) and
// ledger (one workload). Timeouts, retries, faults and circuit breaking are enforced by web's
// sidecar; every request is real HTTP through real sidecar processes.
let m: TestMesh;
let web: SidecarProcess;
const api: EchoApp[] = [];
let ledger: EchoApp;

type Upstream = Record<string, unknown> & { service: string; endpoints: { id: string }[] };
const upstreamOf = (service: string, d: { snapshot: { upstreams: unknown[] } | null }) =>
  d.snapshot?.upstreams.find((u) => (u as Upstream).service === service) as Upstream | undefined;

/** Applies a policy and waits until web's sidecar uses a snapshot whose `service` upstream passes `ok`. */
async function apply(policy: PolicyInput, ok: (u: Upstream) => boolean): Promise<void> {
  const r = await m.mesh.applyPolicy(policy);
  expect(r.ok).toBe(true);
  await m.until(web, `${policy.kind} ${policy.name} in use`, (d) => {
    const u = upstreamOf(policy.serviceName, d as never);
    return u !== undefined && ok(u);
  });
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** A counter's value on web's /metrics (0 when absent). */
async function metric(name: string, labels: string): Promise<number> {
  const { body } = await web.admin<string>('/metrics');
  const line = body.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - t0 };
}

const reset = () => {
  for (const a of [...api, ledger]) {
    a.failRate = 0;
    a.failWith = undefined;
    a.delayMs = 0;
  }
};

beforeAll(async () => {
  m = await TestMesh.start();
  const started = await Promise.all(
    ['a1', 'a2', 'a3', 'l1'].map(async (name) => {
      const app = await m.app(name);
      await m.sidecar(name === 'l1' ? 'ledger' : 'api', app);
      return app;
    }),
  );
  api.push(...started.slice(0, 3));
  ledger = started[3] as EchoApp;
  web = await m.sidecar('web', await m.app('web'), { env: { SIDECAR_UPSTREAMS: 'api,ledger' } });
  await m.until(
    web,
    'api and ledger endpoints',
    (d) => upstreamOf('api', d as never)?.endpoints.length === 3 && upstreamOf('ledger', d as never)?.endpoints.length === 1,
  );
}, 120_000);

afterAll(async () => {
  await m?.dispose();
});

describe('retries', () => {
  it('turn a 30 % flaky upstream into ≥ 99 % success, within the retry budget', async () => {
    reset();
    for (const a of api) a.failRate = 0.3;
    // Five retries: all six tries of a request fail with probability 0.3^6 ≈ 0.07 %, so fewer than
    // 1 % of 300 requests may fail by chance only once in ~10^4 runs (with four retries, 0.3^5 ≈
    // 0.24 %, it happened in CI). This needs ~0.43 retries per request on average; the budget is
    // counted over a sliding second, and with a ratio of 0.6 a loaded CI machine once saw it spent
    // for a moment (5 of 300 failed). 1.0 leaves room for that while still bounding the retries.
    const retries = { attempts: 5, retryOn: ['5xx'], backoff: { baseInterval: '2ms' }, budget: { ratio: 1, minRetriesPerSecond: 10 } };
    await apply({ kind: 'TrafficPolicy', name: 'api-traffic', serviceName: 'api', retries } as PolicyInput, (u) => u.retries !== undefined);
    const hitsBefore = api.reduce((s, a) => s + a.hits.length, 0);
    const retriesBefore = await metric('novamesh_sidecar_retries_total', 'upstream="api"');
    const spentBefore = await metric('novamesh_sidecar_upstream_overflow_total', 'upstream="api",limit="retryBudget"');
    const t0 = performance.now();
    const statuses = await parallel(300, 10, () => call(web, 'api').then((r) => r.status));
    const seconds = (performance.now() - t0) / 1000;
    const ok = statuses.filter((s) => s === 200).length;
    const spent = (await metric('novamesh_sidecar_upstream_overflow_total', 'upstream="api",limit="retryBudget"')) - spentBefore;
    expect(
      ok / 300,
      `statuses: ${JSON.stringify(statuses.filter((s) => s !== 200))}; retries refused by the budget: ${spent}`,
    ).toBeGreaterThanOrEqual(0.99);
    const retried = (await metric('novamesh_sidecar_retries_total', 'upstream="api"')) - retriesBefore;
    // Every try reached an app: the retries are exactly the extra hits, and no more than the budget.
    expect(api.reduce((s, a) => s + a.hits.length, 0) - hitsBefore).toBe(300 + retried);
    expect(retried).toBeGreaterThan(50);
    expect(retried).toBeLessThanOrEqual(1 * 300 + 10 * Math.ceil(seconds + 1));
  });

  it('stop when the budget is spent, so a failing upstream is not hammered', async () => {
    reset();
    for (const a of api) a.failWith = 503;
    const retries = {
      attempts: 3,
      retryOn: ['gateway-error'],
      backoff: { baseInterval: '1ms' },
      budget: { ratio: 0.1, minRetriesPerSecond: 1 },
    };
    await apply({ kind: 'TrafficPolicy', name: 'api-traffic', serviceName: 'api', retries } as PolicyInput, (u) =>
      same((u.retries as { budget?: unknown })?.budget, retries.budget),
    );
    const hitsBefore = api.reduce((s, a) => s + a.hits.length, 0);
    const t0 = performance.now();
    const statuses = await parallel(100, 10, () => call(web, 'api').then((r) => r.status));
    const seconds = (performance.now() - t0) / 1000;
    expect(statuses.every((s) => s === 503)).toBe(true);
    const extra = api.reduce((s, a) => s + a.hits.length, 0) - hitsBefore - 100;
    expect(extra).toBeLessThanOrEqual(0.1 * 100 + Math.ceil(seconds + 1));
    expect(await metric('novamesh_sidecar_upstream_overflow_total', 'upstream="api",limit="retryBudget"')).toBeGreaterThan(0);
  });

  it('a per-try timeout moves a retry to another endpoint', async () => {
    reset();
    (api[0] as EchoApp).delayMs = 1_000;
    const retries = { attempts: 2, perTryTimeout: '150ms', retryOn: ['gateway-error'], budget: { ratio: 1, minRetriesPerSecond: 100 } };
    await apply({ kind: 'TrafficPolicy', name: 'api-traffic', serviceName: 'api', retries } as PolicyInput, (u) =>
      same((u.retries as { perTryTimeout?: unknown })?.perTryTimeout, 150),
    );
    const results = await parallel(12, 6, () => timed(() => call(web, 'api')));
    for (const { value, ms } of results) {
      expect(value.status).toBe(200);
      expect(value.headers['x-app']).not.toBe('a1');
      expect(ms).toBeLessThan(800);
    }
    expect(results.filter((r) => r.ms >= 140).length).toBeGreaterThan(0);
  });
});

describe('timeouts', () => {
  it('a 200 ms request timeout answers 504 UPSTREAM_TIMEOUT after 200–400 ms against a 1 s app', async () => {
    reset();
    for (const a of api) a.delayMs = 1_000;
    await apply({ kind: 'TrafficPolicy', name: 'api-traffic', serviceName: 'api', timeouts: { request: '200ms' } }, (u) =>
      same(u.timeouts, { request: 200 }),
    );
    const results = await parallel(6, 6, () => timed(() => call(web, 'api')));
    for (const { value, ms } of results) {
      expect(value.status).toBe(504);
      expect(value.headers['x-novamesh-error']).toBe('UPSTREAM_TIMEOUT');
      expect(value.headers['x-novamesh-reason']).toContain('200 ms');
      expect(ms).toBeGreaterThanOrEqual(195);
      expect(ms).toBeLessThan(400);
    }
    // The aborted connections were closed, not left busy: the endpoints show nothing in flight.
    const { body } = await web.admin<{ clusters: { service: string; endpoints: { active: number }[] }[] }>('/clusters');
    expect(body.clusters.find((c) => c.service === 'api')?.endpoints.map((e) => e.active)).toEqual([0, 0, 0]);
  });
});

describe('circuit breaking', () => {
  it('maxRequests 2: of 10 concurrent slow requests the overflow gets 503 UPSTREAM_OVERFLOW at once', async () => {
    reset();
    for (const a of api) a.delayMs = 500;
    await apply({ kind: 'TrafficPolicy', name: 'api-traffic', serviceName: 'api', circuitBreaking: { maxRequests: 2 } }, (u) =>
      same(u.circuitBreaking, { maxRequests: 2 }),
    );
    const before = await metric('novamesh_sidecar_upstream_overflow_total', 'upstream="api",limit="maxRequests"');
    const results = await Promise.all(Array.from({ length: 10 }, () => timed(() => call(web, 'api'))));
    const overflow = results.filter((r) => r.value.status === 503);
    expect(results.filter((r) => r.value.status === 200)).toHaveLength(2);
    expect(overflow).toHaveLength(8);
    for (const { value, ms } of overflow) {
      expect(value.headers['x-novamesh-error']).toBe('UPSTREAM_OVERFLOW');
      expect(value.headers['x-novamesh-reason']).toContain('maxRequests (2)');
      expect(ms).toBeLessThan(250);
    }
    expect((await metric('novamesh_sidecar_upstream_overflow_total', 'upstream="api",limit="maxRequests"')) - before).toBe(8);
    const { body } = await web.admin<{ clusters: { service: string; circuitBreaker?: { overflows: { maxRequests: number } } }[] }>(
      '/clusters',
    );
    expect(body.clusters.find((c) => c.service === 'api')?.circuitBreaker?.overflows.maxRequests).toBeGreaterThanOrEqual(8);
  });

  it('a dead upstream gets fast 503s (outlier detection + breaker), and traffic returns when it recovers', async () => {
    reset();
    await apply(
      {
        kind: 'TrafficPolicy',
        name: 'ledger-traffic',
        serviceName: 'ledger',
        circuitBreaking: { maxRequests: 20, maxRetries: 2 },
        outlierDetection: { consecutive5xx: 3, interval: '500ms', baseEjectionTime: '1s', maxEjectionPercent: 100 },
        retries: { attempts: 1, retryOn: ['connect-failure', 'gateway-error'] },
      } as PolicyInput,
      (u) => u.outlierDetection !== undefined && u.circuitBreaking !== undefined,
    );
    expect((await call(web, 'ledger')).status).toBe(200);
    await ledger.stop();
    const results = await parallel(40, 4, () => timed(() => call(web, 'ledger')));
    for (const { value, ms } of results) {
      expect(value.status).toBe(503);
      expect(ms).toBeLessThan(250);
    }
    expect(results.some((r) => r.value.headers['x-novamesh-error'] === 'NO_HEALTHY_UPSTREAM')).toBe(true);
    await ledger.restart();
    await waitFor(async () => (await call(web, 'ledger')).status === 200, { timeoutMs: 10_000, intervalMs: 100, what: 'ledger back' });
  });
});

describe('fault injection', () => {
  it('aborts 10 % of 2,000 requests (within 4.5 σ) with the header, and delays show in latency', async () => {
    reset();
    await m.mesh.deletePolicy('TrafficPolicy', 'api-traffic');
    await apply(
      {
        kind: 'RouteRule',
        name: 'api-faults',
        serviceName: 'api',
        routes: [
          { name: 'abort', match: { path: { prefix: '/abort' } }, fault: { abort: { httpStatus: 503, percentage: 10 } } },
          { name: 'delay', match: { path: { prefix: '/delay' } }, fault: { delay: { fixedDelay: '300ms', percentage: 100 } } },
        ],
      },
      (u) => (u.routes as unknown[]).length === 2 && u.circuitBreaking === undefined && u.retries === undefined,
    );
    const results = await parallel(2_000, 50, () => call(web, 'api', '/abort'));
    const aborted = results.filter((r) => r.status === 503);
    expect(aborted.every((r) => r.headers['x-novamesh-fault'] === 'abort' && r.headers['x-novamesh-error'] === 'FAULT_INJECTED')).toBe(
      true,
    );
    expect(results.filter((r) => r.status !== 503).every((r) => r.status === 200 && r.headers['x-novamesh-fault'] === undefined)).toBe(
      true,
    );
    // Each request is an independent 10 % draw: the count is binomial (mean 200, σ ≈ 13.4). The
    // earlier ± 2 % bound was ± 3 σ, a false alarm about once in 370 runs (158 aborts failed a CI
    // run); 4.5 σ either side (7 %–13 %) is one in 150,000, yet refuses 5 % or 15 %.
    const sigma = Math.sqrt(2_000 * 0.1 * 0.9);
    expect(aborted.length).toBeGreaterThanOrEqual(200 - 4.5 * sigma);
    expect(aborted.length).toBeLessThanOrEqual(200 + 4.5 * sigma);

    const { value, ms } = await timed(() => call(web, 'api', '/delay'));
    expect(value.status).toBe(200);
    expect(value.headers['x-novamesh-fault']).toBe('delay');
    expect(ms).toBeGreaterThanOrEqual(295);
  });
});
