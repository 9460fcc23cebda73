import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  type ManagedProcess,
  pidAlive,
  repoRoot,
  runMeshctl,
  startCertificateAuthority,
  startDiscovery,
  startPolicy,
  startProxyConfig,
  TestNats,
  TestRedis,
  waitFor,
} from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// `meshctl run` and `meshctl sidecar` as a user runs them: real nats-server, redis-server,
// discovery, policy, proxy-config and CA processes; apps are small Node scripts started by
// meshctl; every request goes through real sidecar processes.

const meshctlBin = resolve(repoRoot, 'apps/cli/dist/main.js');
const dir = mkdtempSync(join(tmpdir(), 'novamesh-cli-run-'));

// The app meshctl runs: answers with what it was given, and says when SIGTERM stops it.
const APP = `
import { createServer } from 'node:http';
const server = createServer((req, res) => {
  req.resume();
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ app: process.env.MESH_SERVICE, path: req.url, port: process.env.PORT, httpProxy: process.env.HTTP_PROXY,
    noProxy: process.env.NO_PROXY, meshOutbound: process.env.MESH_OUTBOUND, sawToken: 'SIDECAR_JOIN_TOKEN' in process.env }));
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening on ' + process.env.PORT));
process.on('SIGTERM', () => { console.log('app got SIGTERM'); server.close(() => process.exit(0)); server.closeAllConnections(); });
`;
// The same app, stopping on SIGINT (Ctrl-C) and saying so.
const SIGINT_APP = APP.replace(/process\.on\('SIGTERM'.*\n/, '').concat(
  "process.on('SIGINT', () => { console.log('app got SIGINT'); server.close(() => process.exit(0)); server.closeAllConnections(); });\n",
);
// A caller: GET /call asks http://orders.mesh/hello through HTTP_PROXY (absolute-form request line).
const CALLER = `
import { createServer, request } from 'node:http';
const proxy = new URL(process.env.HTTP_PROXY);
createServer((req, res) => {
  req.resume();
  const up = request({ host: proxy.hostname, port: proxy.port, path: 'http://orders.mesh/hello', headers: { host: 'orders.mesh' } }, (r) => {
    res.writeHead(r.statusCode, { 'content-type': 'application/json' });
    r.pipe(res);
  });
  up.on('error', (e) => { res.writeHead(599); res.end(e.message); });
  up.end();
}).listen(Number(process.env.PORT), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`;

let nats: TestNats;
let redis: TestRedis;
const services: ManagedProcess[] = [];
const started: ChildProcessWithoutNullStreams[] = [];

/** A running `meshctl` child with its output so far. */
interface Meshctl {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** `detached`: meshctl in a process group of its own, as a shell runs a foreground job (for signals to the group). */
function spawnMeshctl(args: string[], opts: { detached?: boolean; env?: NodeJS.ProcessEnv } = {}): Meshctl {
  const child = spawn(process.execPath, [meshctlBin, ...args], {
    env: { ...process.env, NATS_URL: nats.url, NO_COLOR: '1', ...opts.env },
    detached: opts.detached === true,
  });
  started.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (b) => {
    out += b;
  });
  child.stderr.on('data', (b) => {
    err += b;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Where `meshctl run` says everything listens (its `… is in the mesh: …` line). */
interface Running extends Meshctl {
  app: number;
  outbound: number;
  admin: number;
}

async function meshctlRun(args: string[], opts: { detached?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Running> {
  const m = spawnMeshctl(['run', ...args], opts);
  const line = await waitFor(() => /is in the mesh: (.*)/.exec(m.stderr())?.[1], {
    timeoutMs: 30_000,
    what: `meshctl run ${args.join(' ')} to be in the mesh`,
  }).catch((e) => {
    throw new Error(`${(e as Error).message}\nstderr:\n${m.stderr()}\nstdout:\n${m.stdout().slice(-3000)}`);
  });
  const port = (re: RegExp) => Number(re.exec(line)?.[1]);
  return {
    ...m,
    app: port(/app 127\.0\.0\.1:(\d+)/),
    outbound: port(/outbound http:\/\/127\.0\.0\.1:(\d+)/),
    admin: port(/admin http:\/\/127\.0\.0\.1:(\d+)/),
  };
}

function get(port: number, path: string, host?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolveGet, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: host ? { host } : {} }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => {
        try {
          resolveGet({ status: res.statusCode ?? 0, json: JSON.parse(body) });
        } catch {
          resolveGet({ status: res.statusCode ?? 0, json: { body } });
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Polls GET until it answers 200; the error names the last answer. */
async function until200(
  port: number,
  path: string,
  host: string,
  what: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  let last: unknown;
  return waitFor(
    async () => {
      const res = await get(port, path, host);
      last = res;
      return res.status === 200 ? res : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 200, what },
  ).catch((e) => {
    throw new Error(`${(e as Error).message}; last answer: ${JSON.stringify(last)}`);
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      r(true);
    });
    s.once('error', () => r(false));
  });
}

/** The processes `pid` started that still run: pid and command line. */
function childrenOf(pid: number): { pid: number; args: string }[] {
  let out = '';
  try {
    out = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(pid)], { encoding: 'utf8' });
  } catch {
    // ps exits 1 when there are none.
  }
  return out
    .split('\n')
    .map((l) => /^\s*(\d+)\s+(.*)$/.exec(l))
    .filter((m) => m !== null)
    .map((m) => ({ pid: Number(m[1]), args: m[2] as string }));
}

/** How many endpoints of `service` discovery lists as healthy. */
async function healthyEndpoints(service: string): Promise<number> {
  const r = await runMeshctl(['get', 'endpoints', service, '-o', 'json'], { NATS_URL: nats.url });
  if (r.code !== 0) return 0;
  return (JSON.parse(r.stdout) as { endpoints: { status?: string }[] }).endpoints.filter((e) => e.status === 'healthy').length;
}

beforeAll(async () => {
  writeFileSync(join(dir, 'app.mjs'), APP);
  writeFileSync(join(dir, 'caller.mjs'), CALLER);
  writeFileSync(join(dir, 'sigint-app.mjs'), SIGINT_APP);
  [nats, redis] = await Promise.all([TestNats.start(), TestRedis.start()]);
  const natsUrl = nats.url;
  services.push(
    ...(await Promise.all([
      startDiscovery({ natsUrl, redisUrl: redis.url, instance: 'd1' }),
      startPolicy({ natsUrl, instance: 'p1' }),
      startCertificateAuthority({ natsUrl, instance: 'ca1', caDir: join(dir, 'ca') }),
      startProxyConfig({ natsUrl, instance: 'pc1' }),
    ])),
  );
});

afterAll(async () => {
  for (const c of started) if (c.exitCode === null) c.kill('SIGKILL');
  await Promise.all(services.map((p) => p.stop('SIGTERM', 5_000)));
  await Promise.all([nats?.dispose(), redis?.dispose()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('meshctl run and meshctl sidecar', () => {
  let orders: Running;
  let caller: Running;

  it('runs an app behind a sidecar that another workload reaches as http://orders.mesh', async () => {
    orders = await meshctlRun([
      '--service',
      'orders',
      '--create-token',
      '--access-log',
      'off',
      '--',
      process.execPath,
      join(dir, 'app.mjs'),
    ]);
    caller = await meshctlRun([
      '--service',
      'caller',
      '--upstreams',
      'orders',
      '--create-token',
      '--',
      process.execPath,
      join(dir, 'caller.mjs'),
    ]);

    // Through the caller's outbound port, the way an app uses its sidecar (once proxy-config sent the snapshot).
    const r = await until200(caller.outbound, '/hello', 'orders.mesh', 'a request through the caller sidecar to reach orders');
    expect(r.json).toMatchObject({
      app: 'orders',
      path: '/hello',
      port: String(orders.app),
      httpProxy: `http://127.0.0.1:${orders.outbound}`,
      meshOutbound: `http://127.0.0.1:${orders.outbound}`,
      noProxy: 'localhost,127.0.0.1',
      sawToken: false,
    });

    // The caller app itself calls orders through its HTTP_PROXY.
    const viaApp = await get(caller.app, '/call');
    expect(viaApp.status).toBe(200);
    expect(viaApp.json.app).toBe('orders');

    // --create-token got the sidecar a mesh certificate; the output is prefixed per child.
    const dump = await get(orders.admin, '/config_dump');
    expect((dump.json.certificate as { spiffeId: string } | null)?.spiffeId).toBe('spiffe://novamesh.local/ns/default/svc/orders');
    expect(orders.stdout()).toMatch(new RegExp(`^\\[app\\] listening on ${orders.app}$`, 'm'));
    expect(orders.stdout()).toMatch(/^\[sidecar\] \{.*"msg":"sidecar ready"/m);
  });

  it('meshctl sidecar runs in front of a running app, in the foreground, until SIGTERM', async () => {
    const server: Server = createServer((req, res) => {
      req.resume();
      res.end(JSON.stringify({ app: 'payment-in-test', path: req.url }));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const appPort = (server.address() as { port: number }).port;
    try {
      const sc = spawnMeshctl([
        'sidecar',
        '--service',
        'payment',
        '--app-port',
        String(appPort),
        '--outbound-port',
        '0',
        '--admin-port',
        '0',
        '--labels',
        'version=v2',
        '--create-token',
      ]);
      const ready = await waitFor(() => (/"msg":"sidecar ready"/.test(sc.stdout()) ? sc.stdout() : undefined), {
        timeoutMs: 20_000,
        what: 'the sidecar to be ready',
      }).catch((e) => {
        throw new Error(`${(e as Error).message}\n${sc.stderr()}\n${sc.stdout()}`);
      });
      const readyLine = ready.split('\n').find((l) => l.includes('"msg":"sidecar ready"')) as string;
      const admin = (JSON.parse(readyLine) as { ports: { admin: number } }).ports.admin;

      // orders declared no upstreams: its sidecar may call payment, whose endpoint (label and all) this sidecar registered.
      const r = await until200(orders.outbound, '/pay', 'payment.mesh', 'a request through orders to reach payment');
      expect(r.json).toEqual({ app: 'payment-in-test', path: '/pay' });
      const endpoints = await runMeshctl(['get', 'endpoints', 'payment', '-o', 'json'], { NATS_URL: nats.url });
      expect(endpoints.stdout).toContain('"version": "v2"');

      sc.child.kill('SIGTERM');
      expect(await sc.exited).toBe(0);
      expect(await accepts(admin)).toBe(false);
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });

  it('stops the sidecar and then the app on SIGTERM, and exits with the app’s code', async () => {
    // meshctl's guard (it would stop the children, had meshctl been killed) runs beside them, and ends with meshctl.
    const guards = [orders, caller].flatMap((m) => childrenOf(m.child.pid as number).filter((c) => c.args.includes('guard.js')));
    expect(guards).toHaveLength(2);
    caller.child.kill('SIGTERM');
    orders.child.kill('SIGTERM');
    expect(await orders.exited).toBe(0);
    expect(await caller.exited).toBe(0);
    expect(orders.stdout()).toMatch(/^\[app\] app got SIGTERM$/m);
    expect(orders.stdout()).toMatch(/^\[sidecar\] .*"msg":"drained"/m);
    for (const port of [orders.app, orders.admin, orders.outbound, caller.app, caller.outbound]) expect(await accepts(port)).toBe(false);
    await waitFor(() => guards.every((g) => !pidAlive(g.pid)), { timeoutMs: 5_000, what: 'the guards to end with meshctl' });
  });

  it('Ctrl-C in a terminal (SIGINT to the whole process group) drains the sidecar while the app still answers, then stops the app and what it started', async () => {
    // The app behind a shell, as `npm start` or a start script runs it: the signal must reach the node process too.
    const script = `"${process.execPath}" "${join(dir, 'sigint-app.mjs')}"; echo shell done`;
    const m = await meshctlRun(['--service', 'inventory', '--', 'sh', '-c', script], { detached: true });
    expect((await get(m.app, '/before')).status).toBe(200);
    process.kill(-(m.child.pid as number), 'SIGINT');
    expect(await m.exited).toBe(130); // the shell ends by the SIGINT, as in a terminal: 128 + 2
    const out = m.stdout();
    const drained = out.search(/^\[sidecar\] .*"msg":"drained"/m);
    expect(drained, out.slice(-2000)).toBeGreaterThan(-1);
    expect(out.indexOf('[app] app got SIGINT'), out.slice(-2000)).toBeGreaterThan(drained);
    expect(out.match(/app got SIGINT/g)).toHaveLength(1);
    expect(await accepts(m.app)).toBe(false);
    expect(m.stderr()).not.toMatch(/killing/);
  });

  it('still drains (and deregisters) the sidecar before stopping the app when its output reader goes with the same Ctrl-C (| tee)', async () => {
    const m = await meshctlRun(['--service', 'stock', '--', process.execPath, join(dir, 'sigint-app.mjs')], { detached: true });
    const healthy = () => healthyEndpoints('stock');
    await waitFor(async () => (await healthy()) === 1, { timeoutMs: 20_000, what: 'the stock endpoint to be registered' });
    // The reader of meshctl's output is gone: every line meshctl relays from now on fails (EPIPE).
    m.child.stdout.destroy();
    m.child.stderr.destroy();
    process.kill(-(m.child.pid as number), 'SIGINT');
    expect(await m.exited).toBe(0);
    // A sidecar killed instead of drained would have left its endpoint registered and healthy.
    expect(await healthy()).toBe(0);
    expect(await accepts(m.app)).toBe(false);
  });

  it('when meshctl itself is killed (SIGKILL), its guard stops the sidecar (which deregisters) and then the app', async () => {
    // A long heartbeat TTL: the endpoint can only leave within the wait below by deregistering (draining), not by expiring.
    const m = await meshctlRun(['--service', 'killed', '--', process.execPath, join(dir, 'app.mjs')], {
      env: { SIDECAR_HEARTBEAT_TTL: '5m' },
    });
    await waitFor(async () => (await healthyEndpoints('killed')) === 1, {
      timeoutMs: 20_000,
      what: 'the killed endpoint to be registered',
    });
    const children = childrenOf(m.child.pid as number);
    expect(children.map((c) => c.args).join('\n')).toMatch(/guard\.js[\s\S]*app\.mjs[\s\S]*sidecar\/dist\/main\.js/);
    m.child.kill('SIGKILL');
    await m.exited;
    try {
      // No handler of meshctl's ran: the guard stops the sidecar (it drains and deregisters), then the app.
      await waitFor(async () => (await healthyEndpoints('killed')) === 0, { timeoutMs: 20_000, what: 'the sidecar to deregister' });
      await waitFor(() => children.every((c) => !pidAlive(c.pid)), {
        timeoutMs: 20_000,
        what: 'the sidecar, the app and the guard to end',
      });
      for (const port of [m.app, m.admin, m.outbound]) expect(await accepts(port)).toBe(false);
    } finally {
      for (const c of children) if (pidAlive(c.pid)) process.kill(c.pid, 'SIGKILL');
    }
  });

  it('exits with the app’s code when the app ends before it listens, without starting a sidecar', async () => {
    const m = spawnMeshctl(['run', '--service', 'quitter', '--token', 'unused', '--', process.execPath, '-e', 'process.exit(3)']);
    expect(await m.exited).toBe(3);
    expect(m.stderr()).toMatch(/the app exited \(code 3\) before it listened on 127\.0\.0\.1:\d+/);
    expect(m.stdout()).not.toContain('[sidecar]');
  });

  it('refuses bad flags with exit 2, naming the flag, before starting anything', async () => {
    const cases: [string[], RegExp][] = [
      [['sidecar', '--service', 'Orders', '--app-port', '8080'], /option '--service <name>' argument 'Orders' is invalid/],
      [['sidecar', '--service', 'orders'], /required option '--app-port <port>' not specified/],
      [['sidecar', '--service', 'orders', '--app-port', '70000'], /option '--app-port <port>' argument '70000' is invalid/],
      [
        ['sidecar', '--service', 'orders', '--app-port', '8080', '--admin-port', '8080'],
        /--app-port 8080 and --admin-port 8080 use the same port/,
      ],
      [
        ['sidecar', '--service', 'orders', '--app-port', '8080', '--upstream-port', 'payment=x'],
        /option '--upstream-port <service=port>'.*needs a port/,
      ],
      [['sidecar', '--service', 'orders', '--app-port', '8080', '--token-file', join(dir, 'nope')], /--token-file .*nope: no such file/],
      [
        ['run', '--service', 'orders', '--token', 't', '--create-token', '--', 'true'],
        /option '--create-token' cannot be used with option '--token <token>'/,
      ],
      [['run', '--service', 'orders', '--access-log', 'loud', '--', 'true'], /option '--access-log <mode>' argument 'loud' is invalid/],
      [['run', '--service', 'orders'], /missing required argument 'command'/],
    ];
    for (const [args, message] of cases) {
      const r = await runMeshctl(args, { NATS_URL: nats.url });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stdout).toBe('');
    }
  });
});
