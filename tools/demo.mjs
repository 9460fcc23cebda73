#!/usr/bin/env node
// The `npm start` demo: three tiny services, each workload behind its own sidecar, started exactly
// as a user would: `meshctl run --service <name> --create-token -- node tools/demo/service.mjs …`.
//   web ──▶ orders (orders-1 v1, orders-2 v2) ──▶ payment (payment-1 v1, payment-2 v2, fails 10 %)
// The apps call each other as http://<service>.mesh through their sidecar (HTTP_PROXY). A traffic
// generator sends a few requests per second to web and prints where they went every 10 s; the
// TrafficPolicy of examples/demo/traffic.yaml is applied. Logs: .data/demo/<instance>.log.
// NOVAMESH_DEMO=0 (or `npm start -- --no-demo`) skips it. Ctrl-C stops everything it started.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { MeshManager } = createRequire(import.meta.url)(join(root, 'libs/sdk/dist/index.js'));
const meshctlBin = join(root, 'apps/cli/dist/main.js');
const natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';
const logDir = join(root, '.data', 'demo');
const STARTUP_MS = 90_000;
const REQUESTS_PER_SECOND = 4;
const REPORT_EVERY_MS = 10_000;

const INSTANCES = [
  { id: 'payment-1', service: 'payment', version: 'v1' },
  { id: 'payment-2', service: 'payment', version: 'v2', failRate: 0.1 },
  { id: 'orders-1', service: 'orders', version: 'v1', upstream: ['payment', '/charge'] },
  { id: 'orders-2', service: 'orders', version: 'v2', upstream: ['payment', '/charge'] },
  // web declares no --upstreams: it may call any service, itself included, so requests for
  // http://web.mesh/ sent to its outbound port (the traffic below, your curl) go through its sidecar too.
  { id: 'web', service: 'web', version: 'v1', upstream: ['orders', '/orders'], anyUpstream: true },
];

const say = (text) => process.stderr.write(`demo: ${text}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const deadline = t0 + STARTUP_MS;
const children = new Map();
let stopping = false;

/** `port` when nothing listens on it, else any free loopback port. */
function portOr(port) {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => (port ? portOr(0).then(resolve) : resolve(0)));
    srv.listen(port, '127.0.0.1', () => {
      const got = srv.address().port;
      srv.close(() => resolve(got));
    });
  });
}

/** Runs meshctl to completion; resolves with its exit code and output. */
function meshctl(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [meshctlBin, ...args], {
      env: { ...process.env, NATS_URL: natsUrl },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    child.on('exit', (code) => resolve({ code, out }));
  });
}

/** GET through a sidecar's outbound port used as an HTTP proxy, the way the demo apps call each other. */
function viaSidecar(outboundPort, url, headers = {}) {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port: outboundPort, path: url, headers: { ...headers, host: new URL(url).host }, timeout: 5_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode, json: JSON.parse(body), body });
          } catch {
            resolve({ status: res.statusCode, json: {}, body });
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => resolve({ status: 0, json: {}, body: e.message }));
    req.end();
  });
}

async function retryUntilDeadline(what, fn) {
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what}: ${e.message}`);
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${STARTUP_MS / 1000}s`);
    await sleep(250);
  }
}

/** Starts one workload with `meshctl run`; its output goes to .data/demo/<id>.log. */
function startInstance(inst, ports) {
  const args = [
    'run',
    '--service',
    inst.service,
    '--id',
    inst.id,
    '--labels',
    `version=${inst.version}`,
    '--create-token',
    '--access-log',
    'errors',
    '--data-dir',
    join(logDir, 'sidecars', inst.id),
    ...(inst.upstream && !inst.anyUpstream ? ['--upstreams', inst.upstream[0]] : []),
    ...(ports ? ['--outbound-port', String(ports.outbound), '--admin-port', String(ports.admin)] : []),
    '--',
    process.execPath,
    join(root, 'tools/demo/service.mjs'),
    inst.service,
    ...(inst.upstream ?? []),
  ];
  const logFile = join(logDir, `${inst.id}.log`);
  const log = createWriteStream(logFile, { flags: 'w' });
  log.write(`$ meshctl ${args.join(' ')}\n`);
  const child = spawn(process.execPath, [meshctlBin, ...args], {
    env: {
      ...process.env,
      NATS_URL: natsUrl,
      DEMO_ENDPOINT: inst.id,
      DEMO_VERSION: inst.version,
      DEMO_FAIL_RATE: String(inst.failRate ?? 0),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.pipe(log, { end: false });
  child.stderr.on('data', (b) => {
    log.write(b);
    for (const line of b.toString().split('\n'))
      if (line.includes(' is in the mesh: ')) say(`${inst.id}: ${line.replace(/^meshctl: /, '')}`);
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  exited.then((code) => {
    children.delete(inst.id);
    log.end();
    if (stopping) return;
    let tail = '';
    try {
      tail = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-8).join('\n');
    } catch {}
    say(`${inst.id} stopped (exit ${code}); the end of ${logFile}:\n${tail}`);
  });
  children.set(inst.id, { child, exited });
}

/** Sends REQUESTS_PER_SECOND requests to web and prints a summary of where they went every REPORT_EVERY_MS. */
function generateTraffic(outboundPort) {
  let window = { total: 0, statuses: {}, orders: {}, payment: {} };
  const count = (map, key) => (map[key] = (map[key] ?? 0) + 1);
  const send = setInterval(async () => {
    const canary = window.total % 10 === 9 ? { 'x-canary': 'true' } : {};
    const r = await viaSidecar(outboundPort, 'http://web.mesh/', { ...canary, 'x-request-id': `demo-${Date.now()}` });
    window.total++;
    count(window.statuses, r.status || 'error');
    if (r.json.orders?.endpoint) count(window.orders, `${r.json.orders.endpoint} (${r.json.orders.version})`);
    if (r.json.orders?.payment?.endpoint) count(window.payment, r.json.orders.payment.endpoint);
  }, 1000 / REQUESTS_PER_SECOND);
  const fmt = (map) =>
    Object.entries(map)
      .sort()
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || '-';
  const report = setInterval(() => {
    const w = window;
    window = { total: 0, statuses: {}, orders: {}, payment: {} };
    say(
      `traffic, last ${REPORT_EVERY_MS / 1000}s: ${w.total} requests to web · status ${fmt(w.statuses)} · orders: ${fmt(w.orders)} · payment: ${fmt(w.payment)}`,
    );
  }, REPORT_EVERY_MS);
  return () => {
    clearInterval(send);
    clearInterval(report);
  };
}

let stopTraffic = () => undefined;
let mesh;

async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  stopTraffic();
  // meshctl run stops its sidecar (deregister, drain) and then its app.
  const running = [...children.values()];
  for (const { child } of running) child.kill('SIGTERM');
  const killer = setTimeout(() => {
    for (const { child } of running) child.kill('SIGKILL');
  }, 8_000);
  await Promise.all(running.map((c) => c.exited));
  clearTimeout(killer);
  await mesh?.close().catch(() => undefined);
  process.exit(code);
}
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());

async function main() {
  mkdirSync(logDir, { recursive: true });
  // Wait for the control plane that `npm start` starts next to us: discovery's streams, then the CA.
  mesh = new MeshManager({ servers: natsUrl, name: 'novamesh-demo', heartbeat: false, timeoutMs: 2_000 });
  await retryUntilDeadline('discovery (NATS streams)', () => mesh.initialize().then(() => true));
  await retryUntilDeadline('the certificate authority', () => mesh.listCertificates({ service: 'web' }).then(() => true));

  // A previous run stopped abruptly (or with other flags) may have left its services registered:
  // start from clean records, which the new sidecars re-create with their own endpoints and upstreams.
  for (const service of new Set(INSTANCES.map((i) => i.service))) {
    const known = await mesh.getService(service).catch(() => undefined);
    if (known && !known.deregistered) await mesh.deregisterService(service, { drain: 0, wait: true }).catch(() => undefined);
  }

  const web = { outbound: await portOr(15001), admin: await portOr(15000) };
  for (const inst of INSTANCES) startInstance(inst, inst.id === 'web' ? web : undefined);

  await retryUntilDeadline('the policy service', async () => {
    const r = await meshctl(['apply', '-f', join(root, 'examples/demo/traffic.yaml')]);
    if (r.code === 3) throw new Error(r.out.trim());
    if (r.code !== 0) say(`meshctl apply -f examples/demo/traffic.yaml: ${r.out.trim()}`);
    return true;
  });
  // Ready when a request through web's sidecar made it to orders and payment.
  await retryUntilDeadline(
    'a request through web → orders → payment (are proxy-config and the sidecars up? see .data/demo/*.log)',
    async () => {
      if (children.size < INSTANCES.length) throw new Error(`${INSTANCES.length - children.size} workload(s) stopped`);
      const r = await viaSidecar(web.outbound, 'http://web.mesh/');
      if (r.status === 200 && r.json.orders?.payment?.endpoint) return true;
      throw new Error(`last answer: ${r.status || ''} ${r.body.trim().slice(0, 300)}`);
    },
  );
  stopTraffic = generateTraffic(web.outbound);

  const proxy = `-x http://127.0.0.1:${web.outbound}`;
  const tries = [
    [`curl -s ${proxy} http://web.mesh/`, "a request through web's sidecar (its outbound port, as the app does)"],
    ['npx meshctl proxy-status', 'every sidecar, its snapshot version, in sync or not'],
    ['npx meshctl get endpoints orders', 'the workloads meshctl run registered'],
    [`curl -s localhost:${web.admin}/clusters`, "web's sidecar: upstreams, endpoints, mTLS, in-flight requests"],
    [`curl -s localhost:${web.admin}/metrics | grep requests_total`, 'its Prometheus metrics'],
    ['npx meshctl apply -f examples/demo/canary.yaml', 'orders 90/10 v1/v2: watch the traffic line change'],
    [`curl -s ${proxy} -H 'x-canary: true' http://web.mesh/`, 'always orders-2 (v2) with the canary applied'],
    ['npx meshctl apply -f examples/demo/authz.yaml', 'only orders may call payment, so:'],
    [`curl -s ${proxy} http://payment.mesh/charge`, '403: web is not orders'],
    ['npx meshctl delete -f examples/demo/canary.yaml', '(and authz.yaml) back to the start'],
  ];
  const width = Math.max(...tries.map(([cmd]) => cmd.length));
  say(`ready in ${Math.round((Date.now() - t0) / 1000)}s: web → orders (orders-1 v1, orders-2 v2) → payment (payment-1 v1, payment-2 v2, fails 10 %),
  each behind a sidecar started by \`meshctl run\`; ${REQUESTS_PER_SECOND} requests/s go to web. TrafficPolicy payment-traffic (retries, outlier detection) is applied.
  Try, in another terminal:
${tries.map(([cmd, what]) => `    ${cmd.padEnd(width)}   # ${what}`).join('\n')}
  Logs of every workload and its sidecar: .data/demo/<instance>.log. Ctrl-C stops everything.`);
}

main().catch((e) => {
  say(`${e.message}`);
  say('stopping the demo (the control plane keeps running); logs in .data/demo/');
  void stop(1);
});
