#!/usr/bin/env node
// `npm start`: dependencies → build → NATS + Redis (local ones when none is reachable) → the apps
// (discovery, policy, CA, proxy-config) → the demo: three services behind sidecars with traffic
// (tools/demo.mjs; NOVAMESH_DEMO=0 or `npm start -- --no-demo` to skip).
// Ctrl-C stops everything it started: the demo first (its sidecars deregister), then the apps, then NATS/Redis.
// The apps run in process groups of their own, so the terminal's Ctrl-C reaches the demo and this
// script, not them: they are stopped after the demo. The same happens when the npm that ran this
// script ends (SIGTERM to npm, which does not pass it on), and meshctl's guard process stops them,
// in the same order, should this script be killed (SIGKILL) with no chance to.
import { execSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureInfra } from './infra.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const replicas = Number(process.env.REPLICAS || process.env.DISCOVERY_REPLICAS || 1);
const demo = process.env.NOVAMESH_DEMO !== '0' && !process.argv.includes('--no-demo');

execSync('node tools/ensure-deps.mjs', { cwd: root, stdio: 'inherit' });
process.stderr.write('novamesh: building (tsc -b)…\n');
execSync('npx tsc -b && node tools/postbuild.mjs', { cwd: root, stdio: 'inherit' });

const infra = [];
const children = [];
try {
  infra.push(...(await ensureInfra(root, natsUrl, redisUrl)));
} catch (e) {
  process.stderr.write(`novamesh: ${e.message}\n`);
  process.exit(1);
}

const GRACE_MS = 5_000;
/** The demo stops its sidecars (they deregister) and their apps: it gets longer. */
const DEMO_GRACE_MS = 10_000;
const { startGuard } = createRequire(import.meta.url)(join(root, 'apps/cli/dist/commands/guard.js'));
const guard = startGuard();
/** The guard stops what it watches, the last watched first, should this script end without doing it. */
const watch = (child, group, graceMs = GRACE_MS) => {
  guard.watch(child.pid, group, graceMs);
  child.once('exit', () => guard.unwatch(child.pid));
  return child;
};
for (const c of infra) watch(c, true);

const env = { ...process.env, NATS_URL: natsUrl, REDIS_URL: redisUrl };
/** An app of the control plane, in a process group of its own. */
const app = (main, extraEnv) =>
  watch(spawn(process.execPath, [join(root, main)], { env: { ...env, ...extraEnv }, stdio: 'inherit', detached: true }), true);
for (let i = 1; i <= replicas; i++) children.push(app('apps/discovery/dist/main.js', { DISCOVERY_INSTANCE: `discovery-${i}` }));
for (let i = 1; i <= replicas; i++) children.push(app('apps/policy/dist/main.js', { POLICY_INSTANCE: `policy-${i}` }));
// One CA process owns its key directory (.data/ca): replicas must not create it concurrently.
children.push(app('apps/certificate-authority/dist/main.js', { CA_DIR: env.CA_DIR || join(root, '.data', 'ca'), CA_INSTANCE: 'ca-1' }));
for (let i = 1; i <= replicas; i++) children.push(app('apps/proxy-config/dist/main.js', { PROXY_CONFIG_INSTANCE: `proxy-config-${i}` }));
// The demo stays in this group: Ctrl-C reaches it (and its meshctl runs) at once.
const demoProcess = demo
  ? watch(spawn(process.execPath, [join(root, 'tools/demo.mjs')], { env, stdio: 'inherit' }), false, DEMO_GRACE_MS)
  : undefined;
process.stderr.write(
  `novamesh: control plane starting (NATS ${natsUrl}, Redis ${redisUrl}): discovery, policy, certificate-authority, proxy-config.\n` +
    (demo
      ? '  The demo (three services behind sidecars) starts next and prints what to try when it is ready.\n'
      : '  Try: npx meshctl get services, npx meshctl check, or start a workload: npx meshctl run --service hello --create-token -- <command>\n'),
);

/** Sends SIGTERM to `procs` and waits for them, at most `ms`, then SIGKILL. */
async function stopAll(procs, ms) {
  const alive = procs.filter((c) => c.exitCode === null && c.signalCode === null);
  const exited = alive.map((c) => new Promise((r) => c.once('exit', r)));
  for (const c of alive) c.kill('SIGTERM');
  const killer = setTimeout(() => {
    for (const c of alive) c.kill('SIGKILL');
  }, ms);
  await Promise.all(exited);
  clearTimeout(killer);
}

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  process.stderr.write('novamesh: stopping…\n');
  // The demo's sidecars deregister through discovery and NATS: stop it while they still run.
  if (demoProcess) await stopAll([demoProcess], DEMO_GRACE_MS);
  await stopAll(children, GRACE_MS);
  await stopAll(infra, GRACE_MS);
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
process.on('SIGHUP', () => void stop());
// The npm (or shell) that started this script ended: stop as on Ctrl-C rather than run on unseen.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) void stop();
}, 500).unref();
