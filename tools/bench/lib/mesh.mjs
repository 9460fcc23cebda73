// A whole control plane for the data-plane and propagation suites, inside a cleanup scope:
// nats-server and redis-server on free ports, then discovery, policy and (optionally) the
// certificate authority, then proxy-config (it loads what the others publish), as compiled apps
// with their defaults; plus sidecars (apps/sidecar/dist/main.js) and plain workloads registered
// without a sidecar. The same steps as apps/sidecar/src/mesh.e2e-helper.ts (TestMesh).
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnApp, startServers } from './stack.mjs';

const require = createRequire(import.meta.url);

export const CONTROL_PLANE_APPS = ['discovery', 'policy', 'certificate-authority', 'proxy-config'];

/** Built files the control plane, the sidecar and the SDK need (for requireBuilt). */
export const MESH_BUILT = [
  'libs/testing/dist/index.js',
  'libs/sdk/dist/index.js',
  ...CONTROL_PLANE_APPS.map((a) => `apps/${a}/dist/main.js`),
  'apps/sidecar/dist/main.js',
];

/**
 * Starts the control plane; resolves with `{ nats, redis, apps: { name: ManagedProcess }, mesh,
 * dir, pids() }` where `mesh` is an SDK MeshManager connected to it. `ca: false` leaves the
 * certificate authority out (nothing then gets a mesh certificate). `env` reaches every app. With
 * `profileDir` every app writes a V8 CPU profile there (`<app>.cpuprofile`).
 */
export async function startControlPlane(scope, testing, { ca = true, env = {}, profileDir } = {}) {
  const { nats, redis } = await startServers(scope, testing);
  const dir = mkdtempSync(join(tmpdir(), 'novamesh-bench-mesh-'));
  scope.tempDir(dir);
  const logLevel = process.env.LOG_LEVEL ?? 'info';
  const base = { NATS_URL: nats.url, LOG_LEVEL: logLevel, ...env };
  const start = (app, extra) => {
    const p = spawnApp(scope, testing, {
      name: app,
      script: `apps/${app}/dist/main.js`,
      env: { ...base, ...extra },
      profileDir,
      profileName: `${app}.cpuprofile`,
    });
    return p.waitForLine(new RegExp(`"msg":"${app} ready"`), 30_000).then(() => p);
  };
  const apps = {};
  const first = [
    start('discovery', { REDIS_URL: redis.url, DISCOVERY_INSTANCE: 'bench-d1' }).then((p) => (apps.discovery = p)),
    start('policy', { POLICY_INSTANCE: 'bench-p1' }).then((p) => (apps.policy = p)),
  ];
  if (ca)
    first.push(
      start('certificate-authority', {
        CA_INSTANCE: 'bench-ca1',
        CA_DIR: join(dir, 'ca'),
        CA_METRICS_PORT: String(await testing.freePort()),
      }).then((p) => (apps.ca = p)),
    );
  await Promise.all(first);
  apps['proxy-config'] = await start('proxy-config', { PROXY_CONFIG_INSTANCE: 'bench-pc1' });
  const { MeshManager } = require('@novamesh/sdk');
  const mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 15_000 });
  scope.defer('SDK connection', () => mesh.close());
  await mesh.initialize();
  return {
    nats,
    redis,
    apps,
    mesh,
    dir,
    /** pid of every control-plane process, nats-server and redis-server included. */
    pids() {
      const out = Object.fromEntries(Object.entries(apps).map(([k, p]) => [k, p.pid]));
      out['nats-server'] = nats.proc?.pid;
      out['redis-server'] = redis.proc?.pid;
      return out;
    },
  };
}

/** Registers `name` with one endpoint at 127.0.0.1:`port` and no sidecar (callers speak plain HTTP to it). */
export async function registerPlain(mesh, name, port, { upstreams } = {}) {
  await mesh.registerService({
    name,
    type: 'http',
    port,
    endpoints: [{ id: `${name}-0`, address: '127.0.0.1', port, weight: 1, healthy: true, labels: {} }],
    ...(upstreams ? { upstreams } : {}),
  });
}

/** Node flags of a sidecar, as `meshctl sidecar` and `meshctl run` start it (SIDECAR_NODE_FLAGS in apps/cli). */
export const SIDECAR_FLAGS = ['--max-semi-space-size=64'];

/**
 * Starts a sidecar for `service` in front of the workload on `appPort`, with its defaults
 * (SIDECAR_ACCESS_LOG errors, LOG_LEVEL info) and free ports; a join token when `token` is given.
 * Resolves with `{ proc, ports, id }` once it is ready.
 */
export async function startSidecar(
  scope,
  testing,
  cp,
  { id, service, appPort, token, upstreams, profileDir, env = {}, flags = SIDECAR_FLAGS },
) {
  const proc = spawnApp(scope, testing, {
    name: `sidecar-${id}`,
    script: 'apps/sidecar/dist/main.js',
    flags,
    env: {
      NATS_URL: cp.nats.url,
      SIDECAR_SERVICE: service,
      SIDECAR_APP_PORT: String(appPort),
      SIDECAR_ID: id,
      SIDECAR_INBOUND_PORT: '0',
      SIDECAR_OUTBOUND_PORT: '0',
      SIDECAR_ADMIN_PORT: '0',
      SIDECAR_DATA_DIR: join(cp.dir, 'sidecars', id),
      SIDECAR_DRAIN: '200ms',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
      ...(upstreams ? { SIDECAR_UPSTREAMS: upstreams.join(',') } : {}),
      ...(token ? { SIDECAR_JOIN_TOKEN: token } : {}),
      ...env,
    },
    profileDir,
    profileName: `sidecar-${id}-${Date.now()}.cpuprofile`,
  });
  const line = await proc.waitForLine(/"msg":"sidecar ready"/, 30_000);
  return { proc, ports: JSON.parse(line).ports, id };
}

/** GETs a sidecar's admin page as JSON. */
export async function adminOf(sidecar, path) {
  const r = await fetch(`http://127.0.0.1:${sidecar.ports.admin}${path}`);
  return r.json();
}

/** Starts a Node script of tools/bench/lib as its own process; resolves once it prints a line matching `ready`. */
export async function spawnScript(scope, testing, { name, script, args = [], ready }) {
  const proc = new testing.ManagedProcess(name, process.execPath, [join(import.meta.dirname, script), ...args]);
  scope.track(proc);
  scope.defer(name, () => proc.stop('SIGTERM', 5_000));
  const line = ready ? await proc.waitForLine(ready, 20_000) : undefined;
  return { proc, line };
}

/** Starts the minimal upstream (http-upstream.mjs) on a free port; resolves with `{ proc, port }`. */
export async function startUpstream(scope, testing) {
  const { proc, line } = await spawnScript(scope, testing, {
    name: 'upstream',
    script: 'http-upstream.mjs',
    args: [String(await testing.freePort())],
    ready: /"msg":"upstream ready"/,
  });
  return { proc, port: JSON.parse(line).port };
}
