import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ProxySnapshotV1 } from '@novamesh/contracts';
import { hashSnapshot } from '@novamesh/proxy-config';
import { MeshManager } from '@novamesh/sdk';
import {
  freePort,
  ManagedProcess,
  repoRoot,
  startCertificateAuthority,
  startDiscovery,
  startPolicy,
  startProxyConfig,
  TestNats,
  TestRedis,
  waitFor,
} from '@novamesh/testing';
import { request } from 'undici';

/** What a test app saw of one request. */
export interface Hit {
  app: string;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** Bytes of the request body. */
  bodyLength?: number;
  /** The request body as text, when it had one of at most 4 KiB. */
  body?: string;
}

/** A tiny workload: answers every request with JSON naming itself, and remembers what it saw. */
export class EchoApp {
  readonly hits: Hit[] = [];
  /** When set, answers with this status instead of 200. */
  failWith: number | undefined;
  /** Answers after this long. */
  delayMs = 0;
  /** Share of requests (0–1) answered with `failRateStatus` instead (a flaky workload). */
  failRate = 0;
  failRateStatus = 503;
  private constructor(
    readonly name: string,
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Stops listening and drops its connections (a dead workload); {@link restart} brings it back on the same port. */
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  async restart(): Promise<void> {
    this.server.listen(this.port, '127.0.0.1');
    await once(this.server, 'listening');
  }

  static async start(name: string): Promise<EchoApp> {
    let app: EchoApp | undefined;
    const server = createServer((req, res) => {
      const hit: Hit = { app: name, method: req.method ?? '', url: req.url ?? '', headers: req.headers };
      app?.hits.push(hit);
      const chunks: Buffer[] = [];
      let length = 0;
      req.on('data', (chunk: Buffer) => {
        length += chunk.length;
        if (length <= 4096) chunks.push(chunk);
      });
      req.on('end', () => {
        hit.bodyLength = length;
        if (length > 0 && length <= 4096) hit.body = Buffer.concat(chunks).toString();
        const body = JSON.stringify(hit);
        const answer = () => {
          const flaky = app?.failRate && Math.random() < app.failRate ? app.failRateStatus : undefined;
          res.writeHead(flaky ?? app?.failWith ?? 200, { 'content-type': 'application/json', 'x-app': name });
          res.end(body);
        };
        if (app?.delayMs) setTimeout(answer, app.delayMs);
        else answer();
      });
    });
    server.keepAliveTimeout = 65_000;
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    app = new EchoApp(name, server, (server.address() as { port: number }).port);
    return app;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
  }
}

/** Runs `fn(0..n-1)` with at most `concurrency` calls in flight; results in index order. */
export async function parallel<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

/** A running sidecar process with its ports (from its ready line). */
export class SidecarProcess {
  constructor(
    readonly id: string,
    readonly proc: ManagedProcess,
    readonly ports: Record<string, number>,
    /** The join token it was started with. */
    readonly token?: string,
  ) {}

  get outbound(): string {
    return `http://127.0.0.1:${this.ports.outbound}`;
  }

  get inbound(): string {
    return `http://127.0.0.1:${this.ports.inbound}`;
  }

  async admin<T = unknown>(path: string): Promise<{ status: number; body: T }> {
    const r = await request(`http://127.0.0.1:${this.ports.admin}${path}`);
    const text = await r.body.text();
    return { status: r.statusCode, body: (path === '/metrics' ? text : JSON.parse(text)) as T };
  }

  /** The snapshot version in use. */
  async version(): Promise<number> {
    const { body } = await this.admin<{ snapshot: { version: number } | null }>('/config_dump');
    return body.snapshot?.version ?? 0;
  }
}

/** Calls `service` through a sidecar's outbound port the way an app does: `http://<service>.mesh/...`. */
export async function call(
  sidecar: SidecarProcess,
  service: string,
  path = '/',
  opts: { method?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: Hit & Record<string, unknown> }> {
  const r = await request(`${sidecar.outbound}${path}`, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: { host: `${service}.mesh`, ...opts.headers },
  });
  const text = await r.body.text();
  let json: Hit & Record<string, unknown>;
  try {
    json = JSON.parse(text);
  } catch {
    json = { text } as unknown as Hit & Record<string, unknown>;
  }
  return { status: r.statusCode, headers: r.headers, json };
}

/**
 * A whole mesh on free loopback ports for one test file: nats-server, redis-server, discovery,
 * policy, proxy-config and the certificate authority as real processes; workloads as in-process
 * HTTP servers, each behind a real sidecar process.
 */
export class TestMesh {
  readonly procs: ManagedProcess[] = [];
  readonly sidecars: SidecarProcess[] = [];
  readonly apps: EchoApp[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), 'novamesh-mesh-'));
  mesh!: MeshManager;
  nats!: TestNats;
  redis!: TestRedis;
  private proxyConfig: ManagedProcess | undefined;

  static async start(): Promise<TestMesh> {
    const m = new TestMesh();
    [m.nats, m.redis] = await Promise.all([TestNats.start(), TestRedis.start()]);
    const natsUrl = m.nats.url;
    const started = await Promise.all([
      startDiscovery({ natsUrl, redisUrl: m.redis.url, instance: 'd1' }),
      startPolicy({ natsUrl, instance: 'p1' }),
      startCertificateAuthority({ natsUrl, instance: 'ca1', caDir: join(m.dir, 'ca') }),
    ]);
    m.procs.push(...started);
    m.proxyConfig = await startProxyConfig({ natsUrl, instance: 'pc1' });
    m.procs.push(m.proxyConfig);
    m.mesh = new MeshManager({ servers: natsUrl, heartbeat: false, timeoutMs: 10_000 });
    await m.mesh.initialize();
    return m;
  }

  async app(name: string): Promise<EchoApp> {
    const app = await EchoApp.start(name);
    this.apps.push(app);
    return app;
  }

  /** Starts a sidecar for `service` in front of `app`, with a join token unless `token: false`. */
  async sidecar(
    service: string,
    app: { name: string; port: number },
    opts: { id?: string; token?: boolean | string; env?: NodeJS.ProcessEnv; dataDir?: string } = {},
  ): Promise<SidecarProcess> {
    const id = opts.id ?? `${app.name}-sc`;
    const token =
      typeof opts.token === 'string'
        ? opts.token
        : opts.token === false
          ? undefined
          : (await this.mesh.createJoinToken(service, { uses: 100, ttl: '1h' })).token;
    const env: NodeJS.ProcessEnv = {
      NATS_URL: this.nats.url,
      SIDECAR_SERVICE: service,
      SIDECAR_APP_PORT: String(app.port),
      SIDECAR_ID: id,
      SIDECAR_INBOUND_PORT: '0',
      SIDECAR_OUTBOUND_PORT: '0',
      SIDECAR_ADMIN_PORT: '0',
      SIDECAR_DATA_DIR: opts.dataDir ?? join(this.dir, 'sidecars', id),
      SIDECAR_ACK_INTERVAL: '1s',
      SIDECAR_DRAIN: '200ms',
      SIDECAR_HEARTBEAT_TTL: '2s',
      ...(token ? { SIDECAR_JOIN_TOKEN: token } : {}),
      LOG_LEVEL: 'info',
      ...opts.env,
    };
    const proc = new ManagedProcess(`sidecar-${id}`, process.execPath, [resolve(repoRoot, 'apps/sidecar/dist/main.js')], env);
    const line = await proc.waitForLine(/"msg":"sidecar ready"/, 30_000);
    const sc = new SidecarProcess(id, proc, (JSON.parse(line) as { ports: Record<string, number> }).ports, token);
    this.procs.push(proc);
    this.sidecars.push(sc);
    return sc;
  }

  /** Waits until `sidecar` uses a snapshot for which `ok` holds (it re-reads /config_dump). */
  async until(sidecar: SidecarProcess, what: string, ok: (dump: ConfigDump) => boolean, timeoutMs = 20_000): Promise<ConfigDump> {
    let last: ConfigDump | undefined;
    return waitFor(
      async () => {
        const { body } = await sidecar.admin<ConfigDump>('/config_dump');
        last = body;
        return ok(body) ? body : undefined;
      },
      { timeoutMs, intervalMs: 100, what: `${sidecar.id}: ${what}` },
    ).catch((e) => {
      const logs = this.procs.map((p) => `--- ${p.name}\n${p.output.slice(-15).join('\n')}`).join('\n');
      throw new Error(`${(e as Error).message}\nlast config_dump: ${JSON.stringify(last)?.slice(0, 3000)}\n${logs}`);
    });
  }

  async stopProxyConfig(): Promise<void> {
    await this.proxyConfig?.stop();
  }

  /** Starts proxy-config again (a new process of the same instance) after {@link stopProxyConfig}. */
  async startProxyConfig(): Promise<void> {
    this.proxyConfig = await startProxyConfig({ natsUrl: this.nats.url, instance: 'pc1' });
    this.procs.push(this.proxyConfig);
  }

  async dispose(): Promise<void> {
    await this.mesh?.close().catch(() => undefined);
    await Promise.all(this.procs.map((p) => p.stop('SIGTERM', 5_000)));
    await Promise.all(this.apps.map((a) => a.close()));
    await Promise.all([this.nats?.dispose(), this.redis?.dispose()]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * Sends raw bytes to a sidecar's outbound port (or to `port`) and reads responses with a parser of its own
 * (content-length, chunked, none for HEAD/204/304/1xx, until close) until `count` complete ones
 * or the connection closes; never waits more than `timeoutMs`.
 */
export async function raw(
  sidecar: SidecarProcess | number,
  send: (write: (b: string | Buffer) => void, responses: RawResponse[]) => Promise<void> | void,
  opts: { count: number; methods?: string[]; timeoutMs?: number },
): Promise<{ responses: RawResponse[]; closed: boolean; interim: number[] }> {
  const socket = connect(typeof sidecar === 'number' ? sidecar : (sidecar.ports.outbound as number), '127.0.0.1');
  await once(socket, 'connect');
  const responses: RawResponse[] = [];
  const interim: number[] = [];
  let buf = Buffer.alloc(0);
  let closed = false;
  let wake: (() => void) | undefined;
  const parse = () => {
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(lines[0]?.slice(9, 12));
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const c = l.indexOf(':');
        const name = l.slice(0, c).toLowerCase();
        headers[name] = headers[name] ? `${headers[name]}, ${l.slice(c + 1).trim()}` : l.slice(c + 1).trim();
      }
      let rest = buf.subarray(end + 4);
      if (status < 200) {
        interim.push(status);
        buf = rest;
        continue;
      }
      const method = opts.methods?.[responses.length] ?? 'GET';
      let body: Buffer;
      if (method === 'HEAD' || status === 204 || status === 304) body = Buffer.alloc(0);
      else if (/(^|,)\s*chunked$/i.test(headers['transfer-encoding'] ?? '')) {
        const parts: Buffer[] = [];
        for (;;) {
          const eol = rest.indexOf('\r\n');
          if (eol < 0) return;
          const size = Number.parseInt(rest.subarray(0, eol).toString(), 16);
          if (rest.length < eol + 2 + size + 2) return;
          parts.push(rest.subarray(eol + 2, eol + 2 + size));
          rest = rest.subarray(eol + 2 + size + 2);
          if (size === 0) break;
        }
        body = Buffer.concat(parts);
      } else if (headers['content-length'] !== undefined) {
        const n = Number(headers['content-length']);
        if (rest.length < n) return;
        body = rest.subarray(0, n);
        rest = rest.subarray(n);
      } else {
        if (!closed) return;
        body = rest;
        rest = Buffer.alloc(0);
      }
      responses.push({ status, headers, body });
      buf = rest;
    }
  };
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    parse();
    wake?.();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    closed = true;
    parse();
    wake?.();
  });
  await send((b) => socket.write(b), responses);
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  while (responses.length < opts.count && !closed && Date.now() < deadline)
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(r, 50);
    });
  // A little longer for the close that may follow the last response.
  if (!closed) await new Promise((r) => setTimeout(r, 100));
  const result = { responses, closed, interim };
  socket.destroy();
  return result;
}

export async function metrics(s: SidecarProcess): Promise<string> {
  return (await s.admin<string>('/metrics')).body;
}

/** A sidecar's access-log records written after output line `from` that pass `ok`, without the fields that vary between runs. */
export function accessLog(s: SidecarProcess, from: number, ok: (line: string) => boolean): Record<string, unknown>[] {
  return s.proc.output
    .slice(from)
    .filter((l) => l.includes('"msg":"access"') && ok(l))
    .map((l) => {
      const { time: _t, ms: _ms, pid: _p, hostname: _h, instance: _i, ...rest } = JSON.parse(l) as Record<string, unknown>;
      return rest;
    });
}

export function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

export interface ConfigDump {
  snapshot: {
    version: number;
    upstreams: { service: string; endpoints: { id: string; status: string }[]; loadBalancing: { algorithm: string } }[];
    inbound: { mtls: { mode: string }; authorization: { policies: { name: string }[] } };
  } | null;
  rejected: { reason: string } | null;
  certificate: { spiffeId: string; serial: string; source: string } | null;
  ports: Record<string, number>;
}

/**
 * Sidecars of service `shop` without a control plane, for one test file: their NATS_URL points at
 * a closed loopback port (nothing listens there, so no snapshot ever arrives), each has its data
 * dir under one temporary directory, and the fixture runs the workload (`shop`) and the upstream
 * the seeded snapshot names (`orders`). `dispose` stops and removes everything.
 */
export class LoneSidecars {
  private readonly procs: ManagedProcess[] = [];

  private constructor(
    private readonly dir: string,
    private readonly natsUrl: string,
    readonly workload: EchoApp,
    readonly orders: EchoApp,
  ) {}

  static async start(name: string): Promise<LoneSidecars> {
    const dir = mkdtempSync(join(tmpdir(), `novamesh-${name}-`));
    const natsUrl = `nats://127.0.0.1:${await freePort()}`;
    const [workload, orders] = await Promise.all([EchoApp.start('shop'), EchoApp.start('orders')]);
    return new LoneSidecars(dir, natsUrl, workload, orders);
  }

  /**
   * Writes a valid snapshot of `shop` into `id`'s data dir (see seedShopSnapshot), which its sidecar
   * serves from start. With `certificates`, the snapshot names bring-your-own certificate files made
   * with openssl (see opensslCertificates), so the sidecar terminates mutual TLS without a CA; returns their paths.
   */
  seed(id: string, opts: { certificates?: boolean } = {}): OwnCertificateFiles | undefined {
    const dataDir = join(this.dir, id);
    const certificates = opts.certificates
      ? opensslCertificates(join(dataDir, 'byo'), 'spiffe://novamesh.local/ns/default/svc/shop')
      : undefined;
    seedShopSnapshot(dataDir, this.orders.port, certificates);
    return certificates;
  }

  /**
   * Starts sidecar `id` in front of the workload: it serves the snapshot in its data dir (`seed`)
   * or, without one, answers 503 NO_SNAPSHOT. Resolves once it is ready.
   */
  async sidecar(id: string, env: NodeJS.ProcessEnv): Promise<SidecarProcess> {
    const proc = new ManagedProcess(`sidecar-${id}`, process.execPath, [resolve(repoRoot, 'apps/sidecar/dist/main.js')], {
      NATS_URL: this.natsUrl,
      SIDECAR_SERVICE: 'shop',
      SIDECAR_APP_PORT: String(this.workload.port),
      SIDECAR_ID: id,
      SIDECAR_INBOUND_PORT: '0',
      SIDECAR_OUTBOUND_PORT: '0',
      SIDECAR_ADMIN_PORT: '0',
      SIDECAR_DATA_DIR: join(this.dir, id),
      SIDECAR_DRAIN: '200ms',
      SIDECAR_JOIN_TOKEN: '',
      LOG_LEVEL: 'info',
      ...env,
    });
    this.procs.push(proc);
    const line = await proc.waitForLine(/"msg":"sidecar ready"/, 30_000);
    return new SidecarProcess(id, proc, (JSON.parse(line) as { ports: Record<string, number> }).ports);
  }

  async dispose(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop('SIGTERM', 5_000)));
    await Promise.all([this.workload.close(), this.orders.close()]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface OwnCertificateFiles {
  certPath: string;
  keyPath: string;
  caPath: string;
}

/**
 * A CA and a workload certificate for `spiffeId` signed by it (ECDSA P-256, valid one day, usable
 * as server and client certificate), made with openssl in `dir`.
 */
export function opensslCertificates(dir: string, spiffeId: string): OwnCertificateFiles {
  mkdirSync(dir, { recursive: true });
  const at = (f: string) => join(dir, f);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    at('ca.key'),
    '-out',
    at('ca.pem'),
    '-days',
    '1',
    '-subj',
    '/CN=novamesh test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  openssl('req', ...ec, '-keyout', at('key.pem'), '-out', at('leaf.csr'), '-subj', '/CN=workload');
  writeFileSync(
    at('leaf.ext'),
    `subjectAltName=URI:${spiffeId}\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=critical,CA:FALSE\n`,
  );
  openssl(
    'x509',
    '-req',
    '-in',
    at('leaf.csr'),
    '-CA',
    at('ca.pem'),
    '-CAkey',
    at('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-out',
    at('cert.pem'),
    '-extfile',
    at('leaf.ext'),
  );
  return { certPath: at('cert.pem'), keyPath: at('key.pem'), caPath: at('ca.pem') };
}

/**
 * Writes a valid snapshot of `shop` into `dataDir`: inbound permissive/ALLOW (with `certificates`,
 * terminating mTLS with those files), one upstream `orders` at `ordersPort`.
 */
function seedShopSnapshot(dataDir: string, ordersPort: number, certificates?: OwnCertificateFiles): void {
  const content = {
    service: 'shop',
    inbound: {
      mtls: { mode: 'permissive', ...(certificates ? { certificates } : {}) },
      authorization: { defaultAction: 'ALLOW', policies: [] },
      rateLimits: [],
    },
    upstreams: [
      {
        service: 'orders',
        type: 'http',
        port: 80,
        identity: 'spiffe://novamesh.local/ns/default/svc/orders',
        mtls: 'permissive',
        loadBalancing: { algorithm: 'round-robin' },
        subsets: [],
        routes: [],
        endpoints: [{ id: 'orders-1', address: '127.0.0.1', port: ordersPort, weight: 1, labels: {}, status: 'healthy' }],
        endpointsRevision: 1,
      },
    ],
  };
  const draft = { ...content, version: 1, createdAt: new Date().toISOString() };
  // The sidecar hashes what the schema makes of the file, so the hash is taken of the same.
  const hash = hashSnapshot(ProxySnapshotV1.parse({ ...draft, hash: '0'.repeat(64) }));
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(join(dataDir, 'snapshot.json'), JSON.stringify({ ...draft, hash }));
}
