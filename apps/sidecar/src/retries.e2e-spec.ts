import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { Readable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import type { PolicyInput } from '@novamesh/contracts';
import { waitFor } from '@novamesh/testing';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SidecarProcess, TestMesh } from './mesh.e2e-helper';

// Retries, request bodies, gRPC statuses and pending requests as a caller sees them: web's sidecar
// calls `store` (one HTTP workload behind its sidecar), `pay` (registered by hand: one endpoint
// where nothing listens, one plain workload) and `stock` (a grpc-js server behind its sidecar).
// Every request is real traffic through real sidecar processes; the workloads record each try.

/** One try as the workload saw it. */
interface Try {
  id: string;
  method: string;
  path: string;
  /** Its number among the tries of the same request (the x-request-id web's sidecar keeps across tries). */
  n: number;
  at: number;
  bytes: number;
  sha: string;
}

/**
 * How the workload answers a try: `early` answers before reading the body, `hold` waits for
 * {@link ScriptedApp.release}, `cut` closes the connection once the body is in, without an answer.
 */
interface Answer {
  status: number;
  headers?: Record<string, string>;
  early?: boolean;
  hold?: boolean;
  cut?: boolean;
}

/** An HTTP workload whose answers a test scripts per try, recording what each try carried. */
class ScriptedApp {
  readonly tries: Try[] = [];
  answer: (t: Try) => Answer = () => ({ status: 200 });
  private held: (() => void)[] = [];
  private constructor(
    readonly name: string,
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(name: string): Promise<ScriptedApp> {
    let app: ScriptedApp | undefined;
    const server = createServer((req, res) => {
      if (!app) return;
      const id = String(req.headers['x-request-id']);
      const t: Try = {
        id,
        method: req.method ?? '',
        path: req.url ?? '',
        n: app.triesOf(id).length + 1,
        at: performance.now(),
        bytes: 0,
        sha: '',
      };
      app.tries.push(t);
      const a = app.answer(t);
      const hash = createHash('sha256');
      const reply = () => {
        res.writeHead(a.status, { 'content-type': 'application/json', 'x-app': name, ...a.headers });
        res.end(JSON.stringify(t));
      };
      req.on('data', (chunk: Buffer) => {
        t.bytes += chunk.length;
        hash.update(chunk);
      });
      req.on('end', () => {
        t.sha = hash.digest('hex');
        if (a.early) return;
        if (a.cut) req.socket.destroy();
        else if (a.hold) app?.held.push(reply);
        else reply();
      });
      if (a.early) reply();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    app = new ScriptedApp(name, server, (server.address() as { port: number }).port);
    return app;
  }

  triesOf(id: string): Try[] {
    return this.tries.filter((t) => t.id === id);
  }

  /** Answers every held try. */
  release(): void {
    for (const reply of this.held.splice(0)) reply();
  }

  close(): void {
    this.server.closeAllConnections();
    this.server.close();
  }
}

let m: TestMesh;
let web: SidecarProcess;
let store: ScriptedApp;
let pay: ScriptedApp;
let deadPort = 0;
const stockCalls: { method: string; id: string }[] = [];
let stockServer: grpc.Server;
let stock: grpc.Client &
  Record<
    'reserve' | 'lookup',
    (req: Buffer, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: Buffer) => void) => void
  >;

/** Messages stay raw bytes: no protobuf needed to call through the mesh. */
const asIs = (b: Buffer) => b;
const bytes = { requestSerialize: asIs, requestDeserialize: asIs, responseSerialize: asIs, responseDeserialize: asIs };
const stockMethod = (name: string, streams = false) => ({
  path: `/stock.Stock/${name}`,
  requestStream: streams,
  responseStream: streams,
  ...bytes,
});
const stockService = { reserve: stockMethod('Reserve'), lookup: stockMethod('Lookup'), watch: stockMethod('Watch', true) };

/** A stock server: Reserve answers UNAVAILABLE to the first try of each request and OK to the next; Lookup is always NOT_FOUND. */
async function startStock(): Promise<number> {
  stockServer = new grpc.Server();
  const record = (method: string, call: grpc.ServerUnaryCall<Buffer, Buffer>) => {
    const id = String(call.metadata.get('x-request-id')[0]);
    stockCalls.push({ method, id });
    return stockCalls.filter((c) => c.id === id).length;
  };
  stockServer.addService(stockService, {
    reserve: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      record('reserve', call) === 1
        ? cb({ code: grpc.status.UNAVAILABLE, details: 'warming up' })
        : cb(null, Buffer.from(`reserved ${call.request.toString()}`)),
    lookup: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      record('lookup', call);
      cb({ code: grpc.status.NOT_FOUND, details: 'no such item' });
    },
    // Echoes each message at once: a conversation, the client's next message depends on the answer.
    watch: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (b: Buffer) => call.write(Buffer.from(`seen ${b.toString()}`)));
      call.on('end', () => call.end());
    },
  });
  return new Promise<number>((resolve, reject) =>
    stockServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
}

function unary(method: 'reserve' | 'lookup', body: string): Promise<{ err: grpc.ServiceError | null; res?: string }> {
  return new Promise((resolve) =>
    // A deadline, so that a call the mesh mishandles fails the test instead of hanging it.
    stock[method](Buffer.from(body), new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
      resolve({ err, ...(res ? { res: res.toString() } : {}) }),
    ),
  );
}

type Upstream = Record<string, unknown> & { service: string };

/** Applies a policy and waits until web's sidecar uses a snapshot whose upstream of the policy's service passes `ok`. */
async function apply(policy: PolicyInput, ok: (u: Upstream) => boolean): Promise<void> {
  expect((await m.mesh.applyPolicy(policy)).ok).toBe(true);
  await m.until(web, `${policy.kind} ${policy.name} in use`, (d) => {
    const u = (d.snapshot?.upstreams as Upstream[] | undefined)?.find((x) => x.service === policy.serviceName);
    return u !== undefined && ok(u);
  });
}

const json = (v: unknown) => JSON.stringify(v);

/** Calls `service` through web's outbound port with `x-request-id: id`, the body as given (a Buffer, or parts sent one after another). */
async function send(
  service: string,
  path: string,
  opts: {
    method?: string;
    id?: string;
    body?: Buffer | Readable;
    headers?: Record<string, string>;
    signal?: AbortSignal;
  } = {},
) {
  const id = opts.id ?? randomUUID();
  const t0 = performance.now();
  const r = await request(`${web.outbound}${path}`, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: { host: `${service}.mesh`, 'x-request-id': id, ...opts.headers },
    ...(opts.body ? { body: opts.body } : {}),
    signal: opts.signal ?? AbortSignal.timeout(10_000),
  });
  const text = await r.body.text();
  return { id, status: r.statusCode, headers: r.headers, text, ms: performance.now() - t0 };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A counter's value on web's /metrics (0 when absent). */
async function counter(line: string): Promise<number> {
  const { body } = await web.admin<string>('/metrics');
  const found = body.split('\n').find((l) => l.startsWith(line));
  return found ? Number(found.split(' ').at(-1)) : 0;
}

/** web's access-log records (JSON lines) that pass `ok`. */
function accessLog(ok: (r: Record<string, unknown>) => boolean): Record<string, unknown>[] {
  return web.proc.output
    .filter((l) => l.includes('"msg":"access"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter(ok);
}

beforeAll(async () => {
  m = await TestMesh.start();
  [store, pay] = await Promise.all([ScriptedApp.start('s1'), ScriptedApp.start('p1')]);
  await m.sidecar('store', store);
  await m.sidecar('stock', { name: 'k1', port: await startStock() }, { env: { SIDECAR_SERVICE_TYPE: 'grpc' } });
  // An endpoint that refuses connections: a port that was just free.
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  deadPort = (probe.address() as { port: number }).port;
  await new Promise((r) => probe.close(r));
  await m.mesh.registerService(
    {
      name: 'pay',
      type: 'http',
      port: 80,
      endpoints: [
        { id: 'pay-dead', address: '127.0.0.1', port: deadPort },
        { id: 'pay-live', address: '127.0.0.1', port: pay.port },
      ],
    },
    { wait: true },
  );
  web = await m.sidecar('web', await m.app('web'), { env: { SIDECAR_UPSTREAMS: 'store,pay,stock' } });
  const endpoints = { pay: 2, stock: 1, store: 1 } as Record<string, number>;
  await m.until(
    web,
    'store, pay and stock endpoints and a certificate',
    (d) => d.certificate !== null && d.snapshot?.upstreams.filter((u) => u.endpoints.length === endpoints[u.service]).length === 3,
  );
  const Client = grpc.makeGenericClientConstructor(stockService, 'Stock');
  stock = new Client(`127.0.0.1:${web.ports.outbound}`, grpc.credentials.createInsecure(), {
    'grpc.default_authority': 'stock.mesh',
  }) as unknown as typeof stock;
}, 120_000);

afterAll(async () => {
  stock?.close();
  stockServer?.forceShutdown();
  store?.close();
  pay?.close();
  await m?.dispose();
});

describe('Retry-After', () => {
  it('a 503 with Retry-After: 1 is retried after about a second, and the client gets 200', async () => {
    store.answer = (t) => (t.n === 1 ? { status: 503, headers: { 'retry-after': '1' } } : { status: 200 });
    const retries = { attempts: 2, retryOn: ['5xx'], backoff: { baseInterval: '1ms' } };
    await apply(
      { kind: 'TrafficPolicy', name: 'store-traffic', serviceName: 'store', retries, timeouts: { request: '5s' } } as PolicyInput,
      (u) => json(u.timeouts) === json({ request: 5000 }),
    );
    const r = await send('store', '/orders');
    expect(r.status).toBe(200);
    const [first, second, third] = store.triesOf(r.id);
    expect(third).toBeUndefined();
    // The backoff alone would be 1 ms: the gap is the upstream's Retry-After.
    const gap = (second?.at ?? 0) - (first?.at ?? 0);
    expect(gap).toBeGreaterThanOrEqual(990);
    expect(gap).toBeLessThan(2_000);
    expect(r.ms).toBeGreaterThanOrEqual(990);
  });

  it('a Retry-After beyond the time left (or beyond 30 s) is not waited for: the client gets the 503 and its Retry-After at once', async () => {
    store.answer = () => ({ status: 503, headers: { 'retry-after': '5' } });
    const retries = { attempts: 2, retryOn: ['5xx'], backoff: { baseInterval: '1ms' } };
    await apply(
      { kind: 'TrafficPolicy', name: 'store-traffic', serviceName: 'store', retries, timeouts: { request: '2s' } } as PolicyInput,
      (u) => json(u.timeouts) === json({ request: 2000 }),
    );
    const short = await send('store', '/orders');
    expect([short.status, short.headers['retry-after'], short.headers['x-novamesh-error']]).toEqual([503, '5', undefined]);
    expect(short.ms).toBeLessThan(1_000);
    expect(store.triesOf(short.id)).toHaveLength(1);

    // No request timeout: the 30 s cap is what refuses a Retry-After of 31 s.
    store.answer = () => ({ status: 503, headers: { 'retry-after': '31' } });
    await apply(
      { kind: 'TrafficPolicy', name: 'store-traffic', serviceName: 'store', retries } as PolicyInput,
      (u) => u.timeouts === undefined,
    );
    const long = await send('store', '/orders');
    expect([long.status, long.headers['retry-after']]).toEqual([503, '31']);
    expect(long.ms).toBeLessThan(1_000);
    expect(store.triesOf(long.id)).toHaveLength(1);
  });
});

/** A body sent in two parts: the second only once `ready()` holds (the upstream saw what it needed of the first). */
function twoParts(body: Buffer, at: number, ready: () => boolean, what: string): Readable {
  return Readable.from(
    (async function* () {
      yield body.subarray(0, at);
      await waitFor(ready, { timeoutMs: 5_000, intervalMs: 10, what });
      yield body.subarray(at);
    })(),
  );
}

describe('request bodies and retries', () => {
  beforeAll(async () => {
    const retries = { attempts: 2, retryOn: ['5xx'], backoff: { baseInterval: '1ms' } };
    await apply(
      { kind: 'TrafficPolicy', name: 'store-traffic', serviceName: 'store', retries, timeouts: { request: '10s' } } as PolicyInput,
      (u) => json(u.timeouts) === json({ request: 10_000 }),
    );
  });

  it('64 KiB exactly: streamed as it arrives, retried after a 503, and the retry carries the identical bytes', async () => {
    store.answer = (t) => ({ status: t.n === 1 ? 503 : 200 });
    const body = randomBytes(64 * 1024);
    const id = randomUUID();
    // The second half leaves the client only after the upstream got the first: nothing waits for the whole body.
    const parts = twoParts(body, 32 * 1024, () => (store.triesOf(id)[0]?.bytes ?? 0) >= 32 * 1024, 'the first half at the upstream');
    const r = await send('store', '/upload', { method: 'PUT', id, body: parts, headers: { 'content-length': String(body.length) } });
    expect(r.status).toBe(200);
    const tries = store.triesOf(id);
    expect(tries.map((t) => [t.bytes, t.sha])).toEqual([
      [body.length, sha(body)],
      [body.length, sha(body)],
    ]);
  });

  it('an upstream that fails before reading the body: the retry gets the whole body, kept part and rest', async () => {
    store.answer = (t) => (t.n === 1 ? { status: 503, early: true } : { status: 200 });
    const body = randomBytes(40 * 1024);
    const id = randomUUID();
    // The first try fails while the client still holds the second half of a chunked body.
    const parts = twoParts(body, 10 * 1024, () => store.triesOf(id).length > 0, 'the first try at the upstream');
    const r = await send('store', '/upload', { method: 'PUT', id, body: parts });
    expect(r.status).toBe(200);
    const second = store.triesOf(id)[1];
    expect([second?.bytes, second?.sha]).toEqual([body.length, sha(body)]);
  });

  for (const framing of ['content-length', 'chunked'] as const)
    it(`over 64 KiB (${framing}): streamed before the client finished, never retried, the client gets the upstream's 503`, async () => {
      store.answer = () => ({ status: 503 });
      const body = randomBytes(256 * 1024);
      const id = randomUUID();
      // The upstream must get far more than 64 KiB while the client still holds half the body:
      // the sidecar passes it on instead of holding it.
      const parts = twoParts(body, 128 * 1024, () => (store.triesOf(id)[0]?.bytes ?? 0) >= 96 * 1024, 'the upstream to get 96 KiB');
      const headers: Record<string, string> = framing === 'content-length' ? { 'content-length': String(body.length) } : {};
      const r = await send('store', '/upload', { method: 'PUT', id, body: parts, headers });
      expect([r.status, r.headers['x-app'], r.headers['x-novamesh-error']]).toEqual([503, 's1', undefined]);
      expect(store.triesOf(id).map((t) => [t.bytes, t.sha])).toEqual([[body.length, sha(body)]]);
    });
});

/** pay-traffic: one retry, on connect failures only (a refused connection: the request never left). */
function applyPayRetries(): Promise<void> {
  return apply(
    {
      kind: 'TrafficPolicy',
      name: 'pay-traffic',
      serviceName: 'pay',
      retries: { attempts: 1, retryOn: ['connect-failure'] },
    } as PolicyInput,
    (u) => u.retries !== undefined,
  );
}

describe('non-idempotent methods', () => {
  it('a POST answered 503 is not retried under retryOn 5xx (a PUT is)', async () => {
    store.answer = () => ({ status: 503 });
    const post = await send('store', '/orders', { method: 'POST', body: Buffer.from('{"sku":1}') });
    expect([post.status, store.triesOf(post.id).length]).toEqual([503, 1]);
    const put = await send('store', '/orders/1', { method: 'PUT', body: Buffer.from('{"sku":1}') });
    expect([put.status, store.triesOf(put.id).length]).toEqual([503, 3]);
  });

  it('a POST answered 503 is retried when the policy sets retryNonIdempotent, and every try carries its body', async () => {
    await apply(
      {
        kind: 'TrafficPolicy',
        name: 'store-traffic',
        serviceName: 'store',
        retries: { attempts: 2, retryOn: ['5xx'], backoff: { baseInterval: '1ms' }, retryNonIdempotent: true },
        timeouts: { request: '10s' },
      } as PolicyInput,
      (u) => (u.retries as { retryNonIdempotent?: boolean } | undefined)?.retryNonIdempotent === true,
    );
    try {
      store.answer = () => ({ status: 503 });
      const body = Buffer.from('{"sku":2}');
      const post = await send('store', '/orders', { method: 'POST', body });
      expect([post.status, store.triesOf(post.id).map((t) => t.sha)]).toEqual([503, [sha(body), sha(body), sha(body)]]);
    } finally {
      await apply(
        {
          kind: 'TrafficPolicy',
          name: 'store-traffic',
          serviceName: 'store',
          retries: { attempts: 2, retryOn: ['5xx'], backoff: { baseInterval: '1ms' } },
          timeouts: { request: '10s' },
        } as PolicyInput,
        (u) => (u.retries as { retryNonIdempotent?: boolean } | undefined)?.retryNonIdempotent === undefined,
      );
    }
  });

  it('a POST is retried when its endpoint refuses the connection, and the next endpoint gets its body once', async () => {
    pay.answer = () => ({ status: 201 });
    await applyPayRetries();
    const before = await counter('novamesh_sidecar_retries_total{upstream="pay"}');
    const sent: { id: string; sha: string; status: number }[] = [];
    for (let i = 0; i < 6; i++) {
      const body = randomBytes(8 * 1024);
      const r = await send('pay', '/charges', { method: 'POST', body });
      sent.push({ id: r.id, sha: sha(body), status: r.status });
    }
    expect(sent.map((s) => s.status)).toEqual([201, 201, 201, 201, 201, 201]);
    for (const s of sent) expect(pay.triesOf(s.id).map((t) => t.sha)).toEqual([s.sha]);
    // Round robin sends some first tries to the dead endpoint: those were retried.
    const retried = (await counter('novamesh_sidecar_retries_total{upstream="pay"}')) - before;
    expect(retried).toBeGreaterThan(0);
    await waitFor(() => accessLog((r) => r.upstream === 'pay' && r.attempts === 2 && r.endpoint === 'pay-live').length === retried, {
      timeoutMs: 2_000,
      what: `${retried} retried POSTs in web's access log`,
    });
  });
});

describe('a connection lost in the middle of a request', () => {
  it('is a reset, not a connect failure: a POST is not retried under retryOn connect-failure, with or without Content-Length', async () => {
    await applyPayRetries();
    pay.answer = () => ({ status: 200, cut: true });
    const reached: unknown[] = [];
    for (const chunked of [false, true]) {
      for (let i = 0; i < 6; i++) {
        const body = Buffer.from(`{"charge":${i}}`);
        const r = await send('pay', '/charges', { method: 'POST', body: chunked ? Readable.from([body]) : body });
        // Round robin sends some first tries to the dead endpoint (refused: retried, budget permitting); those that
        // reached the live one were cut there, and must not be tried again (the next try would be refused: 503).
        const live = pay.triesOf(r.id).length;
        if (live > 0) reached.push({ chunked, status: r.status, error: r.headers['x-novamesh-error'], live });
      }
    }
    expect(reached.filter((x) => (x as { chunked: boolean }).chunked).length).toBeGreaterThanOrEqual(3);
    expect(reached.filter((x) => !(x as { chunked: boolean }).chunked).length).toBeGreaterThanOrEqual(3);
    expect(reached).toEqual(reached.map((x) => ({ ...(x as object), status: 502, error: 'UPSTREAM_RESET', live: 1 })));
  });
});

describe('gRPC', () => {
  beforeAll(async () => {
    const retries = { attempts: 2, retryOn: ['unavailable'], backoff: { baseInterval: '1ms' } };
    await apply(
      { kind: 'TrafficPolicy', name: 'stock-traffic', serviceName: 'stock', retries } as PolicyInput,
      (u) => u.retries !== undefined,
    );
  });

  it('UNAVAILABLE on the first try is retried under retryOn unavailable: the client gets OK, the server saw each call twice', async () => {
    stockCalls.length = 0;
    for (let i = 0; i < 5; i++) {
      const { err, res } = await unary('reserve', `sku-${i}`);
      expect(err).toBeNull();
      expect(res).toBe(`reserved sku-${i}`);
    }
    const perCall = new Map<string, number>();
    for (const c of stockCalls) perCall.set(c.id, (perCall.get(c.id) ?? 0) + 1);
    expect([...perCall.values()]).toEqual([2, 2, 2, 2, 2]);
    // Another status is the server's answer: passed on after one try.
    stockCalls.length = 0;
    const { err } = await unary('lookup', 'sku-9');
    expect([err?.code, err?.details]).toEqual([grpc.status.NOT_FOUND, 'no such item']);
    expect(stockCalls).toHaveLength(1);
  });

  it('a bidirectional stream under that retry policy still converses: the request is not held back for a retry', async () => {
    const call = (stock as unknown as { watch: (md: grpc.Metadata, o: grpc.CallOptions) => grpc.ClientDuplexStream<Buffer, Buffer> }).watch(
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
    );
    const answers: string[] = [];
    const next = () =>
      new Promise<string>((resolve, reject) => {
        call.once('data', (b: Buffer) => resolve(b.toString()));
        call.once('error', reject);
      });
    for (const item of ['sku-1', 'sku-2', 'sku-3']) {
      const answer = next();
      call.write(Buffer.from(item));
      answers.push(await answer);
    }
    call.end();
    await once(call, 'status');
    expect(answers).toEqual(['seen sku-1', 'seen sku-2', 'seen sku-3']);
  });

  it('an injected abort answers a gRPC caller with a gRPC status, never reaches the server and is not retried', async () => {
    const abort = (name: string, method: string, fault: { httpStatus: number; grpcStatus?: number }) => ({
      name,
      match: { path: { exact: `/stock.Stock/${method}` } },
      fault: { abort: fault },
    });
    // Lookup's abort has no grpcStatus: gRPC's mapping of 503 is UNAVAILABLE, which the retry policy would retry.
    const routes = [abort('reserve', 'Reserve', { httpStatus: 503, grpcStatus: 8 }), abort('lookup', 'Lookup', { httpStatus: 503 })];
    await apply({ kind: 'RouteRule', name: 'stock-faults', serviceName: 'stock', routes }, (u) => (u.routes as unknown[]).length === 2);
    stockCalls.length = 0;
    const reserve = await unary('reserve', 'sku-1');
    expect([reserve.err?.code, reserve.err?.details]).toEqual([
      grpc.status.RESOURCE_EXHAUSTED,
      'fault injected by route stock-faults/reserve',
    ]);
    expect(reserve.err?.metadata.get('x-novamesh-fault')).toEqual(['abort']);
    const lookup = await unary('lookup', 'sku-1');
    expect([lookup.err?.code, lookup.err?.details]).toEqual([grpc.status.UNAVAILABLE, 'fault injected by route stock-faults/lookup']);
    expect(stockCalls).toHaveLength(0);
    // An HTTP caller of the same route gets the HTTP status.
    const http = await send('stock', '/stock.Stock/Reserve', { method: 'POST', body: Buffer.from('x') });
    expect([http.status, http.headers['x-novamesh-fault']]).toEqual([503, 'abort']);
    await waitFor(() => accessLog((r) => r.upstream === 'stock' && r.fault === 'abort').length >= 3, {
      timeoutMs: 2_000,
      what: 'access log',
    });
    expect(
      accessLog((r) => r.upstream === 'stock' && r.fault === 'abort').map((r) => [r.path, r.status, r.grpcStatus, r.attempts]),
    ).toEqual([
      ['/stock.Stock/Reserve', 200, 8, undefined],
      ['/stock.Stock/Lookup', 200, 14, undefined],
      ['/stock.Stock/Reserve', 503, undefined, undefined],
    ]);
    await m.mesh.deletePolicy('RouteRule', 'stock-faults');
  });
});

describe('pending requests', () => {
  it('a request waiting for a connection gets 504 UPSTREAM_TIMEOUT at its route timeout, and one whose client leaves quits the queue', async () => {
    store.answer = (t) => ({ status: 200, hold: t.path === '/hold' });
    await apply(
      {
        kind: 'TrafficPolicy',
        name: 'store-traffic',
        serviceName: 'store',
        circuitBreaking: { maxConnections: 1, maxPendingRequests: 4 },
      } as PolicyInput,
      (u) => json(u.circuitBreaking) === json({ maxConnections: 1, maxPendingRequests: 4 }) && u.retries === undefined,
    );
    await apply(
      {
        kind: 'RouteRule',
        name: 'store-routes',
        serviceName: 'store',
        routes: [
          { name: 'hold', match: { path: { exact: '/hold' } }, timeout: '8s' },
          { name: 'quick', match: { path: { exact: '/quick' } }, timeout: '400ms' },
        ],
      },
      (u) => (u.routes as unknown[]).length === 2,
    );
    const before = store.tries.length;
    const holder = send('store', '/hold');
    await waitFor(() => store.tries.length > before, { timeoutMs: 5_000, what: 'the held request at the upstream' });
    // The only connection is busy for seconds: the quick route's timeout must end the wait.
    const queued = await send('store', '/quick');
    expect([queued.status, queued.headers['x-novamesh-error']]).toEqual([504, 'UPSTREAM_TIMEOUT']);
    expect(queued.headers['x-novamesh-reason']).toContain('waited as pending');
    expect(queued.ms).toBeGreaterThanOrEqual(395);
    expect(queued.ms).toBeLessThan(1_000);

    // A caller that gives up while pending leaves the queue (no request reaches the upstream for it later).
    const leaving = new AbortController();
    const gone = send('store', '/hold', { signal: leaving.signal }).catch((e: Error) => e);
    const breaker = async () => {
      const { body } = await web.admin<{ clusters: { service: string; circuitBreaker?: { pending: number; active: number } }[] }>(
        '/clusters',
      );
      return body.clusters.find((c) => c.service === 'store')?.circuitBreaker;
    };
    await waitFor(async () => (await breaker())?.pending === 1, { timeoutMs: 2_000, what: 'one pending request' });
    leaving.abort();
    expect(await gone).toBeInstanceOf(Error);
    await waitFor(async () => (await breaker())?.pending === 0, { timeoutMs: 2_000, what: 'the pending request to leave' });
    store.release();
    expect((await holder).status).toBe(200);
    await waitFor(async () => (await breaker())?.active === 0, { timeoutMs: 2_000, what: 'no request in flight' });
    expect(store.tries.slice(before).map((t) => t.path)).toEqual(['/hold']);
    await m.mesh.deletePolicy('RouteRule', 'store-routes');
  });
});
