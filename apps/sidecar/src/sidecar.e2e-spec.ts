import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { connect } from '@nats-io/transport-node';
import { type PolicyInput, subjects } from '@novamesh/contracts';
import { freePort, runMeshctl, waitFor } from '@novamesh/testing';
import { Pool, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConfigDump, call, type EchoApp, type Hit, parallel, type SidecarProcess, TestMesh } from './mesh.e2e-helper';

// One mesh for the file: web (one sidecar) calls orders (three workloads, each behind its own
// sidecar: o1 and o2 are version v1, o3 is v2). Every request below is real HTTP through real
// sidecar processes; assertions are on what the echo apps received and what callers got back.
let m: TestMesh;
let web: SidecarProcess;
const orders: { app: EchoApp; sidecar: SidecarProcess }[] = [];

const counts = (apps: EchoApp[], since: number[]) => Object.fromEntries(apps.map((a, i) => [a.name, a.hits.length - (since[i] ?? 0)]));
const marks = () => orders.map((o) => o.app.hits.length);
const ordersApps = () => orders.map((o) => o.app);

/** Applies a policy and waits until web's sidecar uses a snapshot for which `ok` holds. */
async function apply(policy: PolicyInput, ok: (d: ConfigDump) => boolean, sidecar?: SidecarProcess): Promise<void> {
  const r = await m.mesh.applyPolicy(policy);
  expect(r.ok).toBe(true);
  await m.until(sidecar ?? web, `${policy.kind} ${policy.name} in use`, ok);
}

const ordersOf = (d: ConfigDump) =>
  d.snapshot?.upstreams.find((u) => u.service === 'orders') as
    | (NonNullable<ConfigDump['snapshot']>['upstreams'][number] & { routes?: unknown[]; mtls?: string; outlierDetection?: unknown })
    | undefined;

async function many(n: number, path = '/', headers?: Record<string, string>): Promise<number[]> {
  const statuses: number[] = [];
  for (let i = 0; i < n; i++) statuses.push((await call(web, 'orders', path, headers ? { headers } : {})).status);
  return statuses;
}

beforeAll(async () => {
  m = await TestMesh.start();
  for (const [name, version] of [
    ['o1', 'v1'],
    ['o2', 'v1'],
    ['o3', 'v2'],
  ] as const) {
    const app = await m.app(name);
    // o1 weighs 2, the others 1 (only the weighted balancer looks at weights).
    const sidecar = await m.sidecar('orders', app, {
      env: {
        SIDECAR_LABELS: `version=${version}`,
        SIDECAR_WEIGHT: name === 'o1' ? '2' : '1',
        SIDECAR_ZONE: name === 'o1' ? 'zone-a' : 'zone-b',
      },
    });
    orders.push({ app, sidecar });
  }
  web = await m.sidecar('web', await m.app('web'), { env: { SIDECAR_UPSTREAMS: 'orders' } });
  // Ready when web's snapshot has all three orders endpoints and a certificate is in use everywhere.
  await m.until(
    web,
    'three healthy orders endpoints',
    (d) => d.snapshot?.upstreams.find((u) => u.service === 'orders')?.endpoints.length === 3,
  );
  for (const s of [web, ...orders.map((o) => o.sidecar)]) await m.until(s, 'a mesh certificate', (d) => d.certificate !== null);
}, 120_000);

afterAll(async () => {
  await m?.dispose();
});

describe('traffic through two sidecars', () => {
  it('reaches every orders workload, round-robin by default, over mutual TLS with the caller’s SPIFFE ID', async () => {
    const before = marks();
    const statuses = await many(90);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(counts(ordersApps(), before)).toEqual({ o1: 30, o2: 30, o3: 30 });
    const last = orders.flatMap((o) => o.app.hits).at(-1);
    expect(last?.headers['x-forwarded-client-cert']).toMatch(
      /^By=spiffe:\/\/[^/]+\/ns\/default\/svc\/orders;URI=spiffe:\/\/[^/]+\/ns\/default\/svc\/web$/,
    );
  });

  it('meshctl proxy-status shows every sidecar in sync with its service’s latest version', async () => {
    await waitFor(
      async () => {
        const r = await runMeshctl(['proxy-status', '--output', 'json'], { NATS_URL: m.nats.url });
        if (r.code !== 0) throw new Error(r.stderr);
        const rows = JSON.parse(r.stdout) as { sidecar: string; inSync: boolean }[];
        return rows.length === 4 && rows.every((row) => row.inSync);
      },
      { timeoutMs: 15_000, what: 'four sidecars in sync' },
    );
    const table = await runMeshctl(['proxy-status', '--service', 'orders'], { NATS_URL: m.nats.url });
    expect(
      table.stdout
        .split('\n')
        .filter((l) => l.startsWith('orders '))
        .map((l) => l.split(/\s+/)[4]),
    ).toEqual(['SYNCED', 'SYNCED', 'SYNCED']);
  });

  it('answers a service it does not know with 404 NO_ROUTE and says why', async () => {
    const r = await call(web, 'nowhere');
    expect(r.status).toBe(404);
    expect(r.headers['x-novamesh-error']).toBe('NO_ROUTE');
    expect(r.headers['x-novamesh-reason']).toContain('"nowhere" is not a service this sidecar may call (known: orders)');
  });
});

describe('configuration changes under load', () => {
  it('loses no request while five snapshots are applied during continuous concurrent traffic', async () => {
    const before = await web.version();
    let stop = false;
    const statuses: number[] = [];
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stop) statuses.push((await call(web, 'orders', '/steady')).status);
      }),
    );
    const algorithms = ['random', 'least-request', 'round-robin', 'random', 'round-robin'];
    for (const [i, algorithm] of algorithms.entries()) {
      await apply(
        { kind: 'TrafficPolicy', name: 'orders-traffic', serviceName: 'orders', loadBalancing: { algorithm } } as PolicyInput,
        (d) => (d.snapshot?.version ?? 0) >= before + i + 1 && ordersOf(d)?.loadBalancing.algorithm === algorithm,
      );
    }
    stop = true;
    await load;
    expect(statuses.length).toBeGreaterThan(50);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    // Every request has finished: no endpoint counts one in flight (least-request reads these counts).
    const { body } = await web.admin<{ clusters: { service: string; endpoints: { id: string; active: number }[] }[] }>('/clusters');
    const active = body.clusters.find((c) => c.service === 'orders')?.endpoints.map((e) => e.active);
    expect(active).toEqual([0, 0, 0]);
    await m.mesh.deletePolicy('TrafficPolicy', 'orders-traffic');
  });
});

describe('load balancing (TrafficPolicy.loadBalancing), changed live', () => {
  const traffic = (loadBalancing: unknown) =>
    ({ kind: 'TrafficPolicy', name: 'orders-traffic', serviceName: 'orders', loadBalancing }) as PolicyInput;

  it('weighted: in proportion to the endpoints’ registered weights (2:1:1)', async () => {
    await apply(traffic({ algorithm: 'weighted' }), (d) => ordersOf(d)?.loadBalancing.algorithm === 'weighted');
    const before = marks();
    await many(120);
    expect(counts(ordersApps(), before)).toEqual({ o1: 60, o2: 30, o3: 30 });
  });

  it('random: every endpoint gets a fair share', async () => {
    await apply(traffic({ algorithm: 'random' }), (d) => ordersOf(d)?.loadBalancing.algorithm === 'random');
    const before = marks();
    await many(300);
    for (const n of Object.values(counts(ordersApps(), before))) expect(n).toBeGreaterThan(60);
  });

  it('least-request: a slow endpoint gets far less than a third under concurrent load', async () => {
    await apply(traffic({ algorithm: 'least-request' }), (d) => ordersOf(d)?.loadBalancing.algorithm === 'least-request');
    const slow = orders[0]?.app as EchoApp;
    slow.delayMs = 150;
    try {
      const before = marks();
      const statuses = await parallel(180, 9, () => call(web, 'orders').then((r) => r.status));
      expect(statuses.every((s) => s === 200)).toBe(true);
      const c = counts(ordersApps(), before);
      // Two random choices (with replacement) pick the slow one only when both land on it (~1/9):
      // about 20 of 180; round-robin would send 60.
      expect(c.o1, JSON.stringify(c)).toBeLessThan(36);
    } finally {
      slow.delayMs = 0;
    }
  });

  for (const algorithm of ['ring-hash', 'maglev'] as const) {
    it(`${algorithm}: the same user always reaches the same endpoint, users spread over endpoints`, async () => {
      await apply(traffic({ algorithm, hashKey: { header: 'x-user' } }), (d) => ordersOf(d)?.loadBalancing.algorithm === algorithm);
      const homes = new Map<string, Set<string>>();
      for (let u = 0; u < 24; u++)
        for (let i = 0; i < 4; i++) {
          const r = await call(web, 'orders', '/', { headers: { 'x-user': `user-${u}` } });
          expect(r.status).toBe(200);
          const set = homes.get(`user-${u}`) ?? new Set();
          set.add(r.json.app);
          homes.set(`user-${u}`, set);
        }
      for (const set of homes.values()) expect(set.size).toBe(1);
      expect(new Set([...homes.values()].map((s) => [...s][0])).size).toBeGreaterThan(1);
    });
  }

  it('round-robin again once the policy is deleted', async () => {
    await m.mesh.deletePolicy('TrafficPolicy', 'orders-traffic');
    await m.until(web, 'default load balancing', (d) => ordersOf(d)?.loadBalancing.algorithm === 'round-robin');
    const before = marks();
    await many(30);
    expect(counts(ordersApps(), before)).toEqual({ o1: 10, o2: 10, o3: 10 });
  });
});

describe('routing (RouteRule)', () => {
  beforeAll(async () => {
    await apply(
      {
        kind: 'RouteRule',
        name: 'orders-routes',
        serviceName: 'orders',
        subsets: [
          { name: 'v1', labels: { version: 'v1' } },
          { name: 'v2', labels: { version: 'v2' } },
          { name: 'v3', labels: { version: 'v3' } },
        ],
        routes: [
          {
            name: 'canary',
            match: { headers: { 'x-canary': { exact: '1' } } },
            split: [{ subset: 'v2' }],
            headers: { request: { set: { 'x-routed': 'canary' } }, response: { set: { 'x-route': 'canary' } } },
          },
          { name: 'api', match: { path: { prefix: '/api/' } }, rewrite: { prefix: '/v2/' }, split: [{ subset: 'v1' }] },
          { name: 'writes', match: { methods: ['POST'], queryParams: { dry: { exact: 'yes please' } } }, split: [{ subset: 'v2' }] },
          {
            name: 'split',
            match: { path: { exact: '/split' } },
            split: [
              { subset: 'v1', weight: 80 },
              { subset: 'v2', weight: 20 },
            ],
          },
          { name: 'mirror', match: { path: { exact: '/mirror' } }, split: [{ subset: 'v1' }], mirror: { subset: 'v2', percentage: 100 } },
          {
            name: 'mirror-aborted',
            match: { path: { exact: '/mirror-aborted' } },
            split: [{ subset: 'v1' }],
            mirror: { subset: 'v2', percentage: 100 },
            fault: { abort: { httpStatus: 418, percentage: 100 } },
          },
          { name: 'nowhere', match: { path: { exact: '/v3' } }, split: [{ subset: 'v3' }] },
        ],
      } as PolicyInput,
      (d) => (ordersOf(d)?.routes?.length ?? 0) === 7,
    );
  });

  it('a header match sends canaries to v2, with request and response header changes', async () => {
    const r = await call(web, 'orders', '/anything', { headers: { 'x-canary': '1' } });
    expect(r.status).toBe(200);
    expect(r.json.app).toBe('o3');
    expect(r.json.headers['x-routed']).toBe('canary');
    expect(r.headers['x-route']).toBe('canary');
    const plain = await call(web, 'orders', '/anything', { headers: { 'x-canary': '0' } });
    expect(plain.headers['x-route']).toBeUndefined();
  });

  it('a path prefix match rewrites the prefix and keeps the query', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await call(web, 'orders', '/api/items/7?full=1');
      expect(['o1', 'o2']).toContain(r.json.app);
      expect(r.json.url).toBe('/v2/items/7?full=1');
    }
  });

  it('method and decoded query parameter matches', async () => {
    const r = await call(web, 'orders', '/orders?dry=yes%20please', { method: 'POST' });
    expect(r.json.app).toBe('o3');
    // A GET falls through to the default route: round-robin over every endpoint.
    const apps = new Set<string>();
    for (let i = 0; i < 3; i++) apps.add((await call(web, 'orders', '/orders?dry=yes%20please')).json.app);
    expect(apps).toEqual(new Set(['o1', 'o2', 'o3']));
  });

  it('a weighted split sends 80/20 across subsets', async () => {
    const before = marks();
    const n = 800;
    await many(n, '/split');
    const c = counts(ordersApps(), before);
    expect((c.o1 ?? 0) + (c.o2 ?? 0) + (c.o3 ?? 0)).toBe(n);
    // Each request is an independent 20 % draw: v2's count is binomial (mean 160, σ ≈ 11.3). 4.5 σ
    // either side is a false alarm about once in 150,000 runs, yet refuses 70/30 or 90/10 splits.
    const sigma = Math.sqrt(n * 0.2 * 0.8);
    expect(c.o3 ?? 0).toBeGreaterThanOrEqual(n * 0.2 - 4.5 * sigma);
    expect(c.o3 ?? 0).toBeLessThanOrEqual(n * 0.2 + 4.5 * sigma);
  });

  it('mirrors a copy to v2 and returns only the primary’s response', async () => {
    const o3 = orders[2]?.app as EchoApp;
    const before = o3.hits.length;
    for (let i = 0; i < 10; i++) {
      const r = await call(web, 'orders', '/mirror');
      expect(['o1', 'o2']).toContain(r.json.app);
    }
    await expect.poll(() => o3.hits.length - before, { timeout: 5_000 }).toBe(10);
    const copy = o3.hits.at(-1);
    expect(copy?.headers.host).toBe('orders.mesh-shadow');
    expect(copy?.headers['x-novamesh-mirror']).toBe('1');
  });

  it('mirrors a request body too (up to 64 KiB kept), and never a larger one; the primary gets every body whole', async () => {
    const o3 = orders[2]?.app as EchoApp;
    const before = o3.hits.length;
    const send = async (body: string, chunked = false) => {
      const r = await request(`${web.outbound}/mirror`, {
        method: 'POST',
        headers: { host: 'orders.mesh', 'content-type': 'text/plain' },
        body: chunked ? Readable.from([body.slice(0, 10), body.slice(10)]) : body,
      });
      const json = (await r.body.json()) as Hit;
      expect(r.statusCode).toBe(200);
      expect(['o1', 'o2']).toContain(json.app);
      expect(json.bodyLength).toBe(Buffer.byteLength(body));
    };
    await send('{"order":1,"items":["a","b"]}');
    await send('streamed in two chunks, no length', true);
    await send('x'.repeat(200 * 1024)); // larger than what is kept: served, not mirrored
    await send('after the large one');
    await expect.poll(() => o3.hits.length - before, { timeout: 5_000 }).toBe(3);
    const copies = o3.hits.slice(before);
    expect(copies.map((h) => h.body)).toEqual([
      '{"order":1,"items":["a","b"]}',
      'streamed in two chunks, no length',
      'after the large one',
    ]);
    expect(copies.map((h) => [h.method, h.headers.host, h.headers['x-novamesh-mirror']])).toEqual(
      Array(3).fill(['POST', 'orders.mesh-shadow', '1']),
    );
  });

  it('a mirrored request the sidecar answers itself (fault abort) sends no copy, with a body or without; the next one is mirrored as usual', async () => {
    const o3 = orders[2]?.app as EchoApp;
    const before = o3.hits.length;
    const client = new Pool(web.outbound, { connections: 1 });
    try {
      const post = (path: string, body: string) =>
        client.request({ path, method: 'POST', headers: { host: 'orders.mesh', 'content-length': String(body.length) }, body });
      const aborted = await post('/mirror-aborted', 'y'.repeat(48 * 1024)); // more than the stream buffers hold unread
      expect(aborted.statusCode).toBe(418);
      await aborted.body.dump();
      const bodiless = await client.request({ path: '/mirror-aborted', method: 'GET', headers: { host: 'orders.mesh' } });
      expect(bodiless.statusCode).toBe(418);
      await bodiless.body.dump();
      const next = await post('/mirror', 'next');
      expect(next.statusCode).toBe(200);
      expect(((await next.body.json()) as Hit).bodyLength).toBe(4);
      await expect.poll(() => o3.hits.length - before, { timeout: 5_000 }).toBe(1);
      expect(o3.hits.at(-1)?.body).toBe('next');
    } finally {
      await client.close();
    }
  });

  it('a subset without endpoints gets 503 NO_HEALTHY_UPSTREAM naming the subset', async () => {
    const r = await call(web, 'orders', '/v3');
    expect(r.status).toBe(503);
    expect(r.headers['x-novamesh-error']).toBe('NO_HEALTHY_UPSTREAM');
    expect(r.headers['x-novamesh-reason']).toBe('no healthy endpoint of orders in subset v3');
  });

  it('requests no route matches go to every endpoint; deleting the rule restores that for all', async () => {
    await m.mesh.deletePolicy('RouteRule', 'orders-routes');
    await m.until(web, 'no routes', (d) => (ordersOf(d)?.routes?.length ?? 0) === 0);
    const r = await call(web, 'orders', '/v3');
    expect(r.status).toBe(200);
  });
});

describe('authorization (AuthorizationPolicy) on the inbound side', () => {
  const webId = 'spiffe://novamesh.local/ns/default/svc/web';
  const inUse = (name: string) => (d: ConfigDump) => d.snapshot?.inbound.authorization.policies.some((p) => p.name === name) ?? false;

  it('DENY: a matching request gets 403 RBAC_DENIED with the policy named; others pass', async () => {
    await apply(
      {
        kind: 'AuthorizationPolicy',
        name: 'no-admin',
        serviceName: 'orders',
        action: 'DENY',
        rules: [{ from: { principals: [webId] }, to: { paths: ['/admin/*'] } }],
      },
      inUse('no-admin'),
      orders[0]?.sidecar,
    );
    for (const o of orders) await m.until(o.sidecar, 'no-admin in use', inUse('no-admin'));
    const denied = await call(web, 'orders', '/admin/users');
    expect(denied.status).toBe(403);
    expect(denied.headers['x-novamesh-error']).toBe('RBAC_DENIED');
    expect(denied.headers['x-novamesh-reason']).toContain('no-admin');
    expect((await call(web, 'orders', '/orders')).status).toBe(200);
  });

  it('ALLOW for another caller only: web falls to the default DENY', async () => {
    await apply(
      {
        kind: 'AuthorizationPolicy',
        name: 'only-billing',
        serviceName: 'orders',
        action: 'ALLOW',
        rules: [{ from: { principals: ['spiffe://novamesh.local/ns/default/svc/billing'] } }],
      },
      inUse('only-billing'),
      orders[0]?.sidecar,
    );
    for (const o of orders) await m.until(o.sidecar, 'only-billing in use', inUse('only-billing'));
    const r = await call(web, 'orders', '/orders');
    expect(r.status).toBe(403);
    expect(r.headers['x-novamesh-error']).toBe('RBAC_DENIED');
    // The reason names the policy that did not let it in, and who asked.
    expect(r.headers['x-novamesh-reason']).toContain(
      'policy only-billing does not allow GET /orders from spiffe://novamesh.local/ns/default/svc/web',
    );
    await m.mesh.deletePolicy('AuthorizationPolicy', 'only-billing');
    await m.mesh.deletePolicy('AuthorizationPolicy', 'no-admin');
    for (const o of orders) await m.until(o.sidecar, 'no policies', (d) => d.snapshot?.inbound.authorization.policies.length === 0);
    expect((await call(web, 'orders', '/admin/users')).status).toBe(200);
  });
});

describe('AUDIT policies', () => {
  it('let requests through and mark them in the access log', async () => {
    const o1 = orders[0]?.sidecar as SidecarProcess;
    await apply(
      {
        kind: 'AuthorizationPolicy',
        name: 'watch-exports',
        serviceName: 'orders',
        action: 'AUDIT',
        rules: [{ to: { paths: ['/exports/*'] } }],
      },
      (d) => d.snapshot?.inbound.authorization.policies.some((p) => p.name === 'watch-exports') ?? false,
      o1,
    );
    for (const o of orders)
      await m.until(o.sidecar, 'watch-exports in use', (d) => (d.snapshot?.inbound.authorization.policies.length ?? 0) > 0);
    expect((await many(3, '/exports/all')).every((s) => s === 200)).toBe(true);
    const audited = () =>
      orders.flatMap((o) => o.sidecar.proc.output).filter((l) => l.includes('"msg":"access"') && l.includes('watch-exports'));
    await expect.poll(() => audited().length, { timeout: 5_000 }).toBe(3);
    expect(JSON.parse(audited()[0] as string)).toMatchObject({
      direction: 'inbound',
      path: '/exports/all',
      status: 200,
      audit: ['watch-exports'],
    });
    await m.mesh.deletePolicy('AuthorizationPolicy', 'watch-exports');
    for (const o of orders) await m.until(o.sidecar, 'no policies', (d) => d.snapshot?.inbound.authorization.policies.length === 0);
  });
});

describe('a local port per upstream (SIDECAR_UPSTREAM_PORTS)', () => {
  it('sends everything arriving on the port to that upstream, whatever the Host header', async () => {
    const port = await freePort();
    const client = await m.sidecar('reports', await m.app('reports'), {
      env: { SIDECAR_UPSTREAM_PORTS: `orders=${port}`, SIDECAR_UPSTREAMS: 'orders' },
    });
    await m.until(client, 'orders endpoints', (d) => ordersOf(d)?.endpoints.length === 3);
    const r = await request(`http://127.0.0.1:${port}/by-port`, { headers: { host: 'localhost' } });
    expect(r.statusCode).toBe(200);
    expect(((await r.body.json()) as { url: string }).url).toBe('/by-port');
    await client.proc.stop();
  });
});

describe('mutual TLS modes (MutualTLSPolicy)', () => {
  const mode = (m0: string) => (d: ConfigDump) => d.snapshot?.inbound.mtls.mode === m0;

  it('strict: a plaintext caller gets 403 MTLS_REQUIRED, mesh callers still pass over mTLS', async () => {
    await apply(
      { kind: 'MutualTLSPolicy', name: 'orders-mtls', serviceName: 'orders', mode: 'strict' },
      mode('strict'),
      orders[0]?.sidecar,
    );
    for (const o of orders) await m.until(o.sidecar, 'strict', mode('strict'));
    const direct = await request(`${orders[0]?.sidecar.inbound}/orders`, { headers: { host: 'orders.mesh' } });
    expect(direct.statusCode).toBe(403);
    expect(direct.headers['x-novamesh-error']).toBe('MTLS_REQUIRED');
    await direct.body.dump();
    const viaMesh = await call(web, 'orders', '/orders');
    expect(viaMesh.status).toBe(200);
    expect(viaMesh.json.headers['x-forwarded-client-cert']).toContain('URI=spiffe://novamesh.local/ns/default/svc/web');
  });

  it('permissive (the default): plaintext callers pass without an identity', async () => {
    await apply(
      { kind: 'MutualTLSPolicy', name: 'orders-mtls', serviceName: 'orders', mode: 'permissive' },
      mode('permissive'),
      orders[0]?.sidecar,
    );
    const direct = await request(`${orders[0]?.sidecar.inbound}/orders`, { headers: { host: 'orders.mesh' } });
    expect(direct.statusCode).toBe(200);
    const body = (await direct.body.json()) as { headers: Record<string, string> };
    expect(body.headers['x-forwarded-client-cert']).toBeUndefined();
  });

  it('a workload whose sidecar has no join token (no certificate to answer with) is called in plaintext by a caller with one', async () => {
    const tokenless = await m.sidecar('tokenless', await m.app('tokenless'), { token: false });
    const caller = await m.sidecar('caller', await m.app('caller'), { env: { SIDECAR_UPSTREAMS: 'tokenless' } });
    try {
      await m.until(caller, 'a certificate and the tokenless endpoint', (d) =>
        Boolean(d.certificate && d.snapshot?.upstreams.find((u) => u.service === 'tokenless')?.endpoints.length === 1),
      );
      const r = await call(caller, 'tokenless', '/hi');
      expect(r.status, JSON.stringify(r.json)).toBe(200);
      expect(r.json.headers['x-forwarded-client-cert']).toBeUndefined();
    } finally {
      await Promise.all([caller.proc.stop(), tokenless.proc.stop()]);
    }
  });

  it('disable: callers switch to plaintext, so the workload sees no client certificate', async () => {
    await apply(
      { kind: 'MutualTLSPolicy', name: 'orders-mtls', serviceName: 'orders', mode: 'disable' },
      (d) => ordersOf(d)?.mtls === 'disable',
    );
    for (const o of orders) await m.until(o.sidecar, 'disable', mode('disable'));
    for (let i = 0; i < 3; i++) {
      const r = await call(web, 'orders', '/orders');
      expect(r.status).toBe(200);
      expect(r.json.headers['x-forwarded-client-cert']).toBeUndefined();
    }
    await m.mesh.deletePolicy('MutualTLSPolicy', 'orders-mtls');
    await m.until(web, 'mTLS back on', (d) => ordersOf(d)?.mtls === 'permissive');
  });
});

describe('bring-your-own certificates (MutualTLSPolicy.certificates, the seed’s enableMutualTLS)', () => {
  it('replace the mesh certificate, are reloaded when the files change, and give way when the policy goes', async () => {
    const dir = join(m.dir, 'byo');
    mkdirSync(dir, { recursive: true });
    const paths = { certPath: join(dir, 'cert.pem'), keyPath: join(dir, 'key.pem'), caPath: join(dir, 'ca.pem') };
    const issue = async () => {
      const c = await m.mesh.requestCertificate({ service: 'orders', token: (await m.mesh.createJoinToken('orders')).token });
      writeFileSync(paths.keyPath, c.keyPem, { mode: 0o600 });
      writeFileSync(paths.caPath, c.trustBundlePem);
      writeFileSync(paths.certPath, c.chainPem);
      return c.serial.toLowerCase();
    };
    const o1 = orders[0]?.sidecar as SidecarProcess;
    const first = await issue();
    await m.mesh.applyPolicy({
      kind: 'MutualTLSPolicy',
      name: 'orders-byo',
      serviceName: 'orders',
      mode: 'permissive',
      certificates: paths,
    });
    await m.until(o1, 'the files in use', (d) => d.certificate?.source === 'files' && d.certificate.serial === first);
    expect((await many(6)).every((s) => s === 200)).toBe(true);

    const second = await issue();
    await m.until(o1, 'the rewritten files in use', (d) => d.certificate?.serial === second);
    expect((await many(6)).every((s) => s === 200)).toBe(true);

    await m.mesh.deletePolicy('MutualTLSPolicy', 'orders-byo');
    await m.until(o1, 'the mesh certificate again', (d) => d.certificate?.source === 'mesh');
    expect((await many(6)).every((s) => s === 200)).toBe(true);
  });
});

describe('passive outlier detection', () => {
  it('ejects an endpoint that keeps failing, routes around it, and shows it on /clusters', async () => {
    await apply(
      {
        kind: 'TrafficPolicy',
        name: 'orders-traffic',
        serviceName: 'orders',
        outlierDetection: { consecutive5xx: 3, interval: '1s', baseEjectionTime: '30s', maxEjectionPercent: 50 },
      } as PolicyInput,
      (d) => ordersOf(d)?.outlierDetection !== undefined,
    );
    const bad = orders[0]?.app as EchoApp;
    bad.failWith = 503;
    try {
      const statuses = await many(12);
      expect(statuses.filter((s) => s === 503).length).toBe(3);
      const before = marks();
      expect((await many(30)).every((s) => s === 200)).toBe(true);
      expect(counts(ordersApps(), before).o1).toBe(0);
      const { body } = await web.admin<{ clusters: { service: string; endpoints: { id: string; ejected: boolean }[] }[] }>('/clusters');
      const o1 = body.clusters.find((c) => c.service === 'orders')?.endpoints.find((e) => e.id === 'o1-sc');
      expect(o1?.ejected).toBe(true);
      const metrics = (await web.admin<string>('/metrics')).body;
      expect(metrics).toMatch(/novamesh_sidecar_outlier_ejections_total\{upstream="orders"\} 1/);
    } finally {
      bad.failWith = undefined;
      await m.mesh.deletePolicy('TrafficPolicy', 'orders-traffic');
    }
  });
});

describe('locality', () => {
  it('a caller in zone-a prefers the zone-a endpoint', async () => {
    const client = await m.sidecar('shop', await m.app('shop'), { env: { SIDECAR_ZONE: 'zone-a', SIDECAR_UPSTREAMS: 'orders' } });
    await m.until(client, 'orders endpoints', (d) => ordersOf(d)?.endpoints.length === 3);
    const before = marks();
    for (let i = 0; i < 12; i++) expect((await call(client, 'orders')).status).toBe(200);
    expect(counts(ordersApps(), before)).toEqual({ o1: 12, o2: 0, o3: 0 });
  });
});

describe('a sidecar that dies without deregistering', () => {
  it('turns unhealthy after the heartbeat TTL and leaves callers’ load balancing', async () => {
    const victim = orders[1] as { app: EchoApp; sidecar: SidecarProcess };
    await victim.sidecar.proc.stop('SIGKILL');
    const endpointOf = (d: ConfigDump) => ordersOf(d)?.endpoints.find((e) => e.id === victim.sidecar.id);
    await m.until(web, 'the killed endpoint unhealthy', (d) => endpointOf(d)?.status === 'unhealthy', 30_000);
    const before = marks();
    expect((await many(20)).every((s) => s === 200)).toBe(true);
    expect(counts(ordersApps(), before).o2).toBe(0);
  });
});

describe('a sidecar stopped with SIGTERM', () => {
  it('leaves its service’s endpoint set at once, stays out while it drains a request in flight, drains longer than 10 s when SIDECAR_DRAIN says so, and leaves meshctl proxy-status', async () => {
    const app = await m.app('ledger-1');
    // The request in flight keeps the drain going past several registration checks (every 2 s) and
    // past the 10 s a stop of any other app may take.
    app.delayMs = 11_000;
    const sidecar = await m.sidecar('ledger', app, { env: { SIDECAR_DRAIN: '14s' } });
    const endpointIds = async () => {
      try {
        const set = await m.mesh.getService('ledger');
        return set.deregistered ? [] : set.endpoints.map((e) => e.id);
      } catch {
        return []; // not registered (any more)
      }
    };
    await waitFor(async () => (await endpointIds()).includes(sidecar.id) || undefined, { timeoutMs: 15_000, what: 'ledger registered' });
    await m.until(sidecar, 'its own snapshot', (d) => d.snapshot !== null);
    const listed = async () => {
      const r = await runMeshctl(['proxy-status', '--service', 'ledger', '--output', 'json'], { NATS_URL: m.nats.url });
      if (r.code !== 0) throw new Error(r.stderr);
      return (JSON.parse(r.stdout) as { sidecar: string }[]).some((row) => row.sidecar === sidecar.id);
    };
    await waitFor(listed, { timeoutMs: 10_000, what: 'ledger in meshctl proxy-status' });
    const inFlight = request(`${sidecar.inbound}/slow`).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }));
    await waitFor(() => app.hits.length > 0 || undefined, { timeoutMs: 5_000, what: 'the request to reach ledger-1' });
    await m.until(sidecar, 'a mesh certificate', (d) => d.certificate !== null);
    expect(await sidecar.admin('/ready')).toMatchObject({ status: 200, body: { ready: true } });
    const exited = sidecar.proc.stop('SIGTERM', 30_000).then(() => true);
    let done = false;
    void exited.then(() => {
      done = true;
    });
    // Seen every 100 ms from SIGTERM until the process exits: once gone, the endpoint never comes back.
    const seen: boolean[] = [];
    const started = Date.now();
    let readyWhileDraining: unknown;
    while (!done && Date.now() - started < 25_000) {
      seen.push((await endpointIds()).includes(sidecar.id));
      if (seen.length === 10) readyWhileDraining = await sidecar.admin('/ready').catch((e: Error) => e.message);
      await new Promise((r) => setTimeout(r, 100));
    }
    await exited;
    expect(readyWhileDraining).toMatchObject({ status: 503, body: { ready: false, reason: expect.stringContaining('draining') } });
    const goneAt = seen.indexOf(false);
    expect(goneAt).toBeGreaterThanOrEqual(0);
    expect(seen.slice(goneAt).filter(Boolean)).toEqual([]);
    expect(Date.now() - started).toBeGreaterThan(10_000); // it did drain past the registration checks
    expect(await inFlight).toEqual({ status: 200, body: expect.stringContaining('"app":"ledger-1"') });
    expect(sidecar.proc.output.some((l) => l.includes('"msg":"stopped"'))).toBe(true); // not cut off (exit 1)
    expect(await endpointIds()).not.toContain(sidecar.id);
    // Its last acknowledgement said it was leaving: proxy-status forgets it (it does not turn stale).
    await waitFor(async () => !(await listed()), { timeoutMs: 3_000, what: 'ledger gone from meshctl proxy-status' });
  }, 60_000);
});

describe('/ready on the admin port', () => {
  it('says 503 and names the refusal when the CA refused the join token, and the endpoint is never registered nor heartbeats sent (callers would open mutual TLS to it)', async () => {
    // The first sidecar of its service: proxy-config builds no snapshot for a service nobody registered.
    const nc = await connect({ servers: m.nats.url });
    const heartbeats = nc.subscribe(subjects.registry('vault', 'heartbeat'));
    try {
      const sidecar = await m.sidecar('vault', await m.app('vault-1'), { token: 'not-a-token' });
      const ready = await waitFor(
        async () => {
          const r = await sidecar.admin<{ ready: boolean; reason: string }>('/ready');
          return r.body.reason.includes('refused') ? r : undefined;
        },
        { timeoutMs: 10_000, what: '/ready to name the refusal' },
      );
      expect(ready.status).toBe(503);
      expect(ready.body.ready).toBe(false);
      expect(ready.body.reason).toMatch(
        /^no mesh certificate: the certificate authority refused the join token \(.+\); restart the sidecar with a new one \(meshctl token create --service <name>\)$/,
      );
      // Past several registration checks (every 2 s) and heartbeat periods (0.7 s here), discovery
      // knows nothing of it and no heartbeat was sent.
      await new Promise((r) => setTimeout(r, 4_500));
      await expect(m.mesh.getService('vault')).rejects.toMatchObject({ code: 'MESH_NOT_FOUND' });
      expect(heartbeats.getReceived()).toBe(0);
      expect(sidecar.proc.output.join('\n')).toMatch(
        /"msg":"not registering this endpoint yet: the certificate authority refused the join token/,
      );
      expect((await web.admin('/ready')).status).toBe(200);
    } finally {
      await nc.close();
    }
  });

  it('admin pages refuse methods other than GET and query parameters they do not take, saying why', async () => {
    const admin = `http://127.0.0.1:${web.ports.admin}`;
    const post = await request(`${admin}/ready`, { method: 'POST' });
    expect([post.statusCode, post.headers.allow, ((await post.body.json()) as { error: string }).error]).toEqual([
      405,
      'GET, HEAD',
      'POST is not supported: the admin pages are read-only (GET)',
    ]);
    const query = await request(`${admin}/clusters?format=text`);
    expect([query.statusCode, ((await query.body.json()) as { error: string }).error]).toEqual([
      400,
      '/clusters takes no query parameters (got format)',
    ]);
  });
});
