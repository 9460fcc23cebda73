#!/usr/bin/env node
// `npm start`: dependencies → build → NATS + Redis (local ones when none is reachable) → the apps
// → the demo services (NOVAMESH_DEMO=0 to skip).
// Ctrl-C stops everything it started.
import { execSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureInfra } from './infra.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';
const redisUrl = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const replicas = Number(process.env.REPLICAS || process.env.DISCOVERY_REPLICAS || 1);

execSync('node tools/ensure-deps.mjs', { cwd: root, stdio: 'inherit' });
process.stderr.write('novamesh: building (tsc -b)…\n');
execSync('npx tsc -b && node tools/postbuild.mjs', { cwd: root, stdio: 'inherit' });

const children = [];
try {
  children.push(...(await ensureInfra(root, natsUrl, redisUrl)));
} catch (e) {
  process.stderr.write(`novamesh: ${e.message}\n`);
  process.exit(1);
}

const env = { ...process.env, NATS_URL: natsUrl, REDIS_URL: redisUrl };
for (let i = 1; i <= replicas; i++) {
  const child = spawn(process.execPath, [join(root, 'apps/discovery/dist/main.js')], {
    env: { ...env, DISCOVERY_INSTANCE: `discovery-${i}` },
    stdio: 'inherit',
  });
  children.push(child);
}
for (let i = 1; i <= replicas; i++) {
  children.push(
    spawn(process.execPath, [join(root, 'apps/policy/dist/main.js')], {
      env: { ...env, POLICY_INSTANCE: `policy-${i}` },
      stdio: 'inherit',
    }),
  );
}
// One CA process owns its key directory (.data/ca): replicas must not create it concurrently.
children.push(
  spawn(process.execPath, [join(root, 'apps/certificate-authority/dist/main.js')], {
    env: { ...env, CA_DIR: env.CA_DIR || join(root, '.data', 'ca'), CA_INSTANCE: 'ca-1' },
    stdio: 'inherit',
  }),
);
if (process.env.NOVAMESH_DEMO !== '0') {
  children.push(spawn(process.execPath, [join(root, 'tools/demo.mjs')], { env, stdio: 'inherit' }));
}
process.stderr.write(
  `novamesh: control plane starting (NATS ${natsUrl}, Redis ${redisUrl}).\n` +
    '  Try: npx meshctl get services && npx meshctl watch endpoints payment\n',
);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  for (const c of children.reverse()) c.kill('SIGTERM');
  setTimeout(() => process.exit(0), 3000).unref();
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
