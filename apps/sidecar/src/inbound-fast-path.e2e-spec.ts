import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { Readable } from 'node:stream';
import type { PolicyInput } from '@novamesh/contracts';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accessLog, type ConfigDump, metrics, metricValue, type RawResponse, raw, type SidecarProcess, TestMesh } from './mesh.e2e-helper';

// The inbound fast path (SIDECAR_INBOUND_FAST_PATH with SIDECAR_FAST_PATH) against real processes:
// one workload `app` behind two sidecars of two services — `shop` (fast path on) and `shopslow`
// (SIDECAR_FAST_PATH=false, node:http) — called over mutual TLS by the sidecars of `web` and
// `other`, and in plaintext straight to the inbound ports. Every case runs against both and
// compares: statuses, local replies, what the workload saw, access logs, metrics.
let m: TestMesh;
let shop: SidecarProcess;
let shopslow: SidecarProcess;
let web: SidecarProcess;
let other: SidecarProcess;
let app: Server;
/** Urls the workload received. */
const seen: string[] = [];

const TD = 'spiffe://novamesh.local/ns/default/svc';
const webId = `${TD}/web`;
const otherId = `${TD}/other`;
const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

interface AppView {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  bytes: number;
  sha: string;
}

function startApp(): Server {
  return createServer((req, res) => {
    seen.push(req.url ?? '');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      // A workload that answers badly: a head of about 20 KiB, or no answer at all (the connection cut).
      if (req.url === '/huge-head') {
        const many = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`x-big-${i}`, 'v'.repeat(90)]));
        res.writeHead(200, many);
        res.end('big');
        return;
      }
      if (req.url === '/cut') {
        req.socket.destroy();
        return;
      }
      const view: AppView = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, bytes: body.length, sha: sha256(body) };
      res.writeHead(200, { 'content-type': 'application/json', 'x-app': 'shop', 'x-multi': ['a', 'b'] });
      res.end(JSON.stringify(view));
    });
  });
}

/** `shopslow` → `shop` everywhere in a value (policy names, SPIFFE IDs), so both sidecars' answers compare equal. */
function same<T>(value: T): T {
  return JSON.parse(JSON.stringify(value).replaceAll('shopslow', 'shop')) as T;
}

const both = () =>
  [
    ['shop', shop],
    ['shopslow', shopslow],
  ] as const;

/** Applies `policy` for both services (named `<service>-<name>`) and waits until both sidecars use it. */
async function applyBoth(policy: Record<string, unknown> & { kind: string; name: string }, ok: (d: ConfigDump) => boolean): Promise<void> {
  for (const [service, sidecar] of both()) {
    const r = await m.mesh.applyPolicy({ ...policy, name: `${service}-${policy.name}`, serviceName: service } as PolicyInput);
    expect(r.ok).toBe(true);
    await m.until(sidecar, `${policy.kind} ${policy.name}`, ok);
  }
}

async function deleteBoth(kind: PolicyInput['kind'], name: string, ok: (d: ConfigDump) => boolean): Promise<void> {
  for (const [service, sidecar] of both()) {
    await m.mesh.deletePolicy(kind, `${service}-${name}`);
    await m.until(sidecar, `${kind} ${name} gone`, ok);
  }
}

const authzPolicies = (d: ConfigDump) => d.snapshot?.inbound.authorization.policies.length ?? 0;

/** A call from a client sidecar to `service` over the mesh (mTLS to the inbound side). */
async function viaMesh(from: SidecarProcess, service: string, path: string, headers: Record<string, string> = {}, body?: Readable) {
  const r = await request(`${from.outbound}${path}`, {
    method: body ? 'POST' : 'GET',
    headers: { host: `${service}.mesh`, ...headers },
    ...(body ? { body } : {}),
  });
  const text = await r.body.text();
  const view = r.headers['x-app'] === 'shop' ? (JSON.parse(text) as AppView) : undefined;
  if (view) delete view.headers['x-request-id']; // the calling sidecar's own, different per call
  return { status: r.statusCode, error: r.headers['x-novamesh-error'], reason: r.headers['x-novamesh-reason'], app: view };
}

/** A response without the headers that vary between runs (and its length: the service names differ in length). */
function stable(r: RawResponse | undefined): { status: number; headers: Record<string, string>; body: unknown } {
  const { date: _d, 'content-length': _l, ...headers } = r?.headers ?? {};
  const text = r?.body.toString() ?? '';
  let body: unknown = text;
  if (headers['x-app'] === 'shop') {
    const v = JSON.parse(text) as AppView;
    body = { ...v, headers: { ...v.headers, host: undefined } };
  }
  return same({ status: r?.status ?? 0, headers, body });
}

/** One plaintext request (`head(service)`, a head without body) straight to each sidecar's inbound port: the stable answers, fast first. */
async function plainToBoth(head: (service: string) => string): Promise<ReturnType<typeof stable>[]> {
  const out: ReturnType<typeof stable>[] = [];
  for (const [service, s] of both()) {
    const { responses } = await raw(s.ports.inbound as number, (w) => w(head(service)), { count: 1 });
    out.push(stable(responses[0]));
  }
  return out;
}

/** Inbound access-log records after line `from`, the fields both paths write. */
function inboundLog(s: SidecarProcess, from: number) {
  return same(
    accessLog(s, from, (l) => l.includes('"direction":"inbound"')).map((r) => ({
      method: r.method,
      path: r.path,
      status: r.status,
      peer: r.peer,
      error: r.error,
      reason: r.reason,
      audit: r.audit,
    })),
  );
}

const fastCount = async (s: SidecarProcess) => metricValue(await metrics(s), 'novamesh_sidecar_inbound_fast_path_requests_total');

beforeAll(async () => {
  m = await TestMesh.start();
  app = startApp();
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const target = { name: 'app', port: (app.address() as { port: number }).port };
  const env = { SIDECAR_ACCESS_LOG: 'all' };
  const callers = { SIDECAR_UPSTREAMS: 'shop,shopslow' };
  [shop, shopslow, web, other] = await Promise.all([
    m.sidecar('shop', target, { id: 'shop-fast', env }),
    m.sidecar('shopslow', target, { id: 'shop-slow', env: { ...env, SIDECAR_FAST_PATH: 'false' } }),
    m.sidecar('web', await m.app('web'), { env: callers }),
    m.sidecar('other', await m.app('other'), { env: callers }),
  ]);
  for (const s of [shop, shopslow]) await m.until(s, 'a certificate and a snapshot', (d) => d.certificate !== null && d.snapshot !== null);
  for (const s of [web, other])
    await m.until(
      s,
      'both shop endpoints and a certificate',
      (d) => d.certificate !== null && (d.snapshot?.upstreams.filter((u) => u.endpoints.length > 0).length ?? 0) >= 2,
    );
}, 120_000);

afterAll(async () => {
  await m?.dispose();
  app?.close();
});

describe('the inbound fast path', () => {
  it('decides DENY, ALLOW and AUDIT by SPIFFE principal over mTLS as node:http does', async () => {
    await applyBoth(
      {
        kind: 'AuthorizationPolicy',
        name: 'deny',
        action: 'DENY',
        rules: [{ from: { principals: [webId] }, to: { paths: ['/admin/*'] } }],
      },
      (d) => authzPolicies(d) === 1,
    );
    await applyBoth(
      { kind: 'AuthorizationPolicy', name: 'audit', action: 'AUDIT', rules: [{ to: { paths: ['/exports/*'] } }] },
      (d) => authzPolicies(d) === 2,
    );
    const marks = [shop.proc.output.length, shopslow.proc.output.length];
    const fastBefore = await fastCount(shop);
    const sequence = async (service: string) => [
      await viaMesh(web, service, '/admin/users'),
      await viaMesh(web, service, '/orders?x=1'),
      await viaMesh(web, service, '/exports/all'),
      await viaMesh(other, service, '/admin/users'),
    ];
    const [fast, slow] = [await sequence('shop'), await sequence('shopslow')];
    expect(fast.map((r) => r.status)).toEqual([403, 200, 200, 200]);
    expect(fast[0]?.error).toBe('RBAC_DENIED');
    expect(fast[0]?.reason).toContain('shop-deny');
    expect(fast[0]?.app).toBeUndefined();
    expect(fast[1]?.app?.headers['x-forwarded-client-cert']).toBe(`By=${TD}/shop;URI=${webId}`);
    expect(fast[3]?.app?.headers['x-forwarded-client-cert']).toBe(`By=${TD}/shop;URI=${otherId}`);
    expect(same(fast)).toEqual(same(slow));
    await new Promise((r) => setTimeout(r, 300)); // log lines flushed
    const fastLog = inboundLog(shop, marks[0] as number);
    expect(fastLog).toHaveLength(4);
    expect(fastLog).toEqual(inboundLog(shopslow, marks[1] as number));
    expect(fastLog[0]).toMatchObject({ status: 403, error: 'RBAC_DENIED', peer: webId });
    expect(fastLog[2]).toMatchObject({ status: 200, audit: ['shop-audit'], peer: webId });
    expect((await fastCount(shop)) - fastBefore).toBe(4);
    expect(await fastCount(shopslow)).toBe(0);

    // ALLOW for `other` only: web falls to the default DENY.
    await applyBoth(
      { kind: 'AuthorizationPolicy', name: 'allow', action: 'ALLOW', rules: [{ from: { principals: [otherId] } }] },
      (d) => authzPolicies(d) === 3,
    );
    const allowSequence = async (service: string) => [await viaMesh(web, service, '/orders'), await viaMesh(other, service, '/orders')];
    const [fastAllow, slowAllow] = [await allowSequence('shop'), await allowSequence('shopslow')];
    expect(fastAllow.map((r) => [r.status, r.error])).toEqual([
      [403, 'RBAC_DENIED'],
      [200, undefined],
    ]);
    expect(same(fastAllow)).toEqual(same(slowAllow));
    await deleteBoth('AuthorizationPolicy', 'allow', (d) => authzPolicies(d) === 2);
    await deleteBoth('AuthorizationPolicy', 'deny', (d) => authzPolicies(d) === 1);
    await deleteBoth('AuthorizationPolicy', 'audit', (d) => authzPolicies(d) === 0);
  });

  it('judges an absolute-form request by its path and frames bodies itself, as node:http does', async () => {
    await applyBoth(
      { kind: 'AuthorizationPolicy', name: 'deny-admin', action: 'DENY', rules: [{ to: { paths: ['/admin/*'] } }] },
      (d) => authzPolicies(d) === 1,
    );
    const smuggled = 'GET /admin/secret HTTP/1.1\r\nHost: x\r\n\r\n';
    for (const [service, s] of both()) {
      const port = s.ports.inbound as number;
      const before = seen.length;
      const abs = (path: string) => `GET http://${service}.mesh${path} HTTP/1.1\r\nHost: elsewhere\r\n\r\n`;
      const denied = (await raw(port, (w) => w(abs('/admin/users')), { count: 1 })).responses[0];
      expect([denied?.status, denied?.headers['x-novamesh-error']], service).toEqual([403, 'RBAC_DENIED']);
      const passed = (await raw(port, (w) => w(abs('/orders?x=1')), { count: 1 })).responses[0];
      expect(passed?.status, service).toBe(200);
      const view = JSON.parse(passed?.body.toString() ?? '{}') as AppView;
      expect([view.url, view.headers.host], service).toEqual(['/orders?x=1', `${service}.mesh`]);
      const bad = (await raw(port, (w) => w('GET orders HTTP/1.1\r\nHost: x\r\n\r\n'), { count: 1 })).responses[0];
      expect([bad?.status, bad?.headers['x-novamesh-error']], service).toEqual([400, 'BAD_REQUEST']);
      const post = (
        await raw(
          port,
          (w) =>
            w(`POST /orders HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`),
          { count: 1 },
        )
      ).responses[0];
      expect(JSON.parse(post?.body.toString() ?? '{}'), service).toMatchObject({ method: 'POST', url: '/orders', bytes: smuggled.length });
      await new Promise((r) => setTimeout(r, 200)); // a smuggled request would have arrived by now
      expect(seen.slice(before), service).toEqual(['/orders?x=1', '/orders']);
    }
    await deleteBoth('AuthorizationPolicy', 'deny-admin', (d) => authzPolicies(d) === 0);
  });

  it('strict mTLS refuses a plaintext caller with 403 MTLS_REQUIRED before the workload, mesh callers pass', async () => {
    const mode = (m0: string) => (d: ConfigDump) => d.snapshot?.inbound.mtls.mode === m0;
    await applyBoth({ kind: 'MutualTLSPolicy', name: 'mtls', mode: 'strict' }, mode('strict'));
    const before = seen.length;
    const plain = await plainToBoth((service) => `GET /strict HTTP/1.1\r\nHost: ${service}.mesh\r\n\r\n`);
    expect(plain[0]?.status).toBe(403);
    expect(plain[0]?.headers['x-novamesh-error']).toBe('MTLS_REQUIRED');
    expect(plain[0]).toEqual(plain[1]);
    expect(seen.length).toBe(before);
    const meshed = [await viaMesh(web, 'shop', '/strict'), await viaMesh(web, 'shopslow', '/strict')];
    expect(meshed[0]?.status).toBe(200);
    expect(same(meshed[0])).toEqual(same(meshed[1]));
    await deleteBoth('MutualTLSPolicy', 'mtls', mode('permissive'));
  });

  it('sets x-forwarded-client-cert from the verified peer only, stripping what a client sent', async () => {
    const forged = { 'x-forwarded-client-cert': `By=${TD}/shop;URI=${TD}/admin` };
    const meshed = [await viaMesh(web, 'shop', '/xfcc', forged), await viaMesh(web, 'shopslow', '/xfcc', forged)];
    expect(meshed[0]?.app?.headers['x-forwarded-client-cert']).toBe(`By=${TD}/shop;URI=${webId}`);
    expect(same(meshed[0])).toEqual(same(meshed[1]));
    const plain = await plainToBoth(
      (service) => `GET /xfcc HTTP/1.1\r\nHost: ${service}.mesh\r\nX-Forwarded-Client-Cert: By=x;URI=${webId}\r\n\r\n`,
    );
    expect(plain[0]?.status).toBe(200);
    expect((plain[0]?.body as AppView | undefined)?.headers['x-forwarded-client-cert']).toBeUndefined();
    expect(plain[0]).toEqual(plain[1]);
  });

  it('a local rate limit refuses with 429 and its headers, admitted responses carry RateLimit-*', async () => {
    const limits = (n: number) => (d: ConfigDump) => ((d.snapshot?.inbound as { rateLimits?: unknown[] })?.rateLimits?.length ?? 0) === n;
    await applyBoth(
      {
        kind: 'RateLimitPolicy',
        name: 'tiny',
        limits: [{ name: 'two', requests: 2, per: 'minute', burst: 2, match: { path: { prefix: '/limited' } } }],
      },
      limits(1),
    );
    const before = seen.length;
    const marks = [shop.proc.output.length, shopslow.proc.output.length];
    const results: ReturnType<typeof stable>[][] = [];
    for (const [service, s] of both()) {
      const { responses } = await raw(
        s.ports.inbound as number,
        async (w, got) => {
          for (let i = 1; i <= 3; i++) {
            w(`GET /limited/${i} HTTP/1.1\r\nHost: ${service}.mesh\r\n\r\n`);
            while (got.length < i) await new Promise((r) => setTimeout(r, 10));
          }
        },
        { count: 3 },
      );
      // Reset and Retry-After depend on the moment of the request: present, not compared.
      results.push(
        responses.map((r) => {
          const s0 = stable(r);
          for (const h of ['ratelimit-reset', 'retry-after']) if (s0.headers[h] !== undefined) s0.headers[h] = 'n';
          return s0;
        }),
      );
    }
    const [fast, slow] = results;
    expect(fast?.map((r) => r.status)).toEqual([200, 200, 429]);
    expect(fast?.[2]?.headers).toMatchObject({
      'x-novamesh-error': 'RATE_LIMITED',
      'ratelimit-limit': '2',
      'ratelimit-remaining': '0',
      'retry-after': 'n',
    });
    expect(fast?.[2]?.headers['x-novamesh-reason']).toContain('shop-tiny/two');
    expect(fast?.[1]?.headers['ratelimit-remaining']).toBe('0');
    expect(fast).toEqual(slow);
    expect(seen.length - before).toBe(4); // two per sidecar
    await new Promise((r) => setTimeout(r, 300));
    expect(inboundLog(shop, marks[0] as number)).toEqual(inboundLog(shopslow, marks[1] as number));
    const limited = (text: string) => same(text.split('\n').filter((l) => l.startsWith('novamesh_sidecar_rate_limited_total{')));
    expect(limited(await metrics(shop))).toEqual(limited(await metrics(shopslow)));
    await deleteBoth('RateLimitPolicy', 'tiny', limits(0));
  });

  it('streams a chunked request body to the workload, in plaintext and over mTLS', async () => {
    const parts = [Buffer.alloc(70_000, 1), Buffer.from('tail'), Buffer.alloc(5_000, 7)];
    const whole = Buffer.concat(parts);
    const plain: ReturnType<typeof stable>[] = [];
    for (const [service, s] of both()) {
      const { responses } = await raw(
        s.ports.inbound as number,
        async (w) => {
          w(`POST /upload HTTP/1.1\r\nHost: ${service}.mesh\r\nTransfer-Encoding: chunked\r\n\r\n`);
          for (const p of parts) {
            w(Buffer.concat([Buffer.from(`${p.length.toString(16)}\r\n`), p, Buffer.from('\r\n')]));
            await new Promise((r) => setTimeout(r, 20));
          }
          w('0\r\n\r\n');
        },
        { count: 1 },
      );
      plain.push(stable(responses[0]));
    }
    const view = plain[0]?.body as AppView;
    expect(view).toMatchObject({ bytes: whole.length, sha: sha256(whole) });
    expect(view.headers['transfer-encoding']).toBe('chunked');
    expect(plain[0]).toEqual(plain[1]);
    const meshed = [
      await viaMesh(web, 'shop', '/upload', {}, Readable.from(parts)),
      await viaMesh(web, 'shopslow', '/upload', {}, Readable.from(parts)),
    ];
    expect(meshed[0]?.app).toMatchObject({ bytes: whole.length, sha: sha256(whole) });
    expect(same(meshed[0])).toEqual(same(meshed[1]));
  });

  it('answers pipelined requests in order, also across a hand-over to node:http', async () => {
    const results: { responses: ReturnType<typeof stable>[]; closed: boolean }[] = [];
    for (const [service, s] of both()) {
      const host = `Host: ${service}.mesh\r\n`;
      const send =
        `GET /p1 HTTP/1.1\r\n${host}\r\n` +
        `POST /p2 HTTP/1.1\r\n${host}Content-Length: 5\r\n\r\nhello` +
        `GET /p3 HTTP/1.1\r\n${host}X-Dup: 1\r\nX-Dup: 2\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n` +
        `GET /p4 HTTP/1.0\r\n${host}\r\n`;
      const { responses, closed } = await raw(s.ports.inbound as number, (w) => w(send), { count: 4 });
      results.push({ responses: responses.map(stable), closed });
    }
    const [fast, slow] = results;
    expect(fast?.responses.map((r) => [r.status, (r.body as AppView).url])).toEqual([
      [200, '/p1'],
      [200, '/p2'],
      [200, '/p3'],
      [200, '/p4'],
    ]);
    expect(fast?.closed).toBe(true);
    expect(fast).toEqual(slow);
  });

  it('hands an mTLS connection to node:http at a request it does not take, which still checks and forwards', async () => {
    const handoffs = async () => metricValue(await metrics(shop), 'novamesh_sidecar_inbound_fast_path_handoffs_total', 'reason="grpc"');
    const before = await handoffs();
    // A gRPC content type over HTTP/1.1: sidecar A forwards it as is, sidecar B's fast path hands the TLS connection over.
    const grpcish = { 'content-type': 'application/grpc+json' };
    const meshed = [await viaMesh(web, 'shop', '/handed', grpcish), await viaMesh(web, 'shopslow', '/handed', grpcish)];
    expect(meshed[0]?.status).toBe(200);
    expect(meshed[0]?.app?.headers['x-forwarded-client-cert']).toBe(`By=${TD}/shop;URI=${webId}`);
    expect(same(meshed[0])).toEqual(same(meshed[1]));
    expect((await handoffs()) - before).toBeGreaterThanOrEqual(1);
    // The connections keep working (whichever path they are on now).
    for (let i = 0; i < 5; i++) expect((await viaMesh(web, 'shop', `/after-${i}`)).status).toBe(200);
  });

  it('a workload that answers badly (a head over 16 KiB, a cut connection) gets 502 UPSTREAM_RESET naming it, not APP_UNAVAILABLE, on both paths', async () => {
    for (const path of ['/huge-head', '/cut']) {
      const answers = await plainToBoth((service) => `GET ${path} HTTP/1.1\r\nHost: ${service}.mesh\r\n\r\n`);
      expect(
        answers.map((a) => [a.status, a.headers['x-novamesh-error']]),
        path,
      ).toEqual([
        [502, 'UPSTREAM_RESET'],
        [502, 'UPSTREAM_RESET'],
      ]);
      for (const a of answers) expect(a.headers['x-novamesh-reason']).toMatch(/^the workload at http:\/\/127\.0\.0\.1:\d+ failed: /);
    }
    const [fast] = await plainToBoth((service) => `GET /huge-head HTTP/1.1\r\nHost: ${service}.mesh\r\n\r\n`);
    expect(fast?.headers['x-novamesh-reason']).toContain('the response head is larger than 16 KiB');
  });

  it('a workload that is gone gets 503 APP_UNAVAILABLE with the same reason and log (last: stops the workload)', async () => {
    app.closeAllConnections();
    await new Promise((r) => app.close(r));
    await new Promise((r) => setTimeout(r, 300)); // earlier log lines flushed
    const marks = [shop.proc.output.length, shopslow.proc.output.length];
    const answers = await plainToBoth((service) => `GET /gone HTTP/1.1\r\nHost: ${service}.mesh\r\n\r\n`);
    expect(answers[0]?.status).toBe(503);
    expect(answers[0]?.headers['x-novamesh-error']).toBe('APP_UNAVAILABLE');
    expect(answers[0]?.headers['x-novamesh-reason']).toContain('ECONNREFUSED');
    expect(answers[0]).toEqual(answers[1]);
    await new Promise((r) => setTimeout(r, 300));
    const log = inboundLog(shop, marks[0] as number);
    expect(log).toHaveLength(1);
    expect(log).toEqual(inboundLog(shopslow, marks[1] as number));
  });
});
