// Starting what a suite measures, inside a cleanup scope (see cleanup.mjs): a fresh nats-server
// (JetStream, file store) and redis-server on free loopback ports, compiled apps, NATS connections.
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { note } from './progress.mjs';

const require = createRequire(import.meta.url);

/** Throws a helpful error when a compiled file the suite needs is missing. */
export function requireBuilt(root, paths) {
  const missing = paths.filter((p) => !existsSync(join(root, p)));
  if (missing.length) throw new Error(`not built: ${missing.join(', ')} — run \`npx tsc -b\` (npm run bench does it)`);
}

/** The workspace packages every suite uses (after requireBuilt). */
export function natsLibs() {
  return {
    testing: require('@novamesh/testing'),
    nats: require('@nats-io/transport-node'),
    js: require('@nats-io/jetstream'),
  };
}

/** Where CPU profiles go (`--cpu-prof`), created. */
export function profileDirOf(root, suite) {
  const dir = join(root, 'bench-results', 'profiles');
  mkdirSync(dir, { recursive: true });
  note(`${suite} CPU profiles go to ${dir}`);
  return dir;
}

/** Charts go to docs/img when the run updates docs/, else next to the raw results. */
export function imgDirOf(root, writeDoc) {
  const dir = join(root, writeDoc ? 'docs/img' : 'bench-results');
  mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * nats-server and redis-server on free ports. Each is constructed first and its cleanup
 * registered, then started: a server that fails to come up is still stopped.
 */
export async function startServers(scope, testing) {
  const { TestNats, TestRedis, freePort } = testing;
  const nats = new TestNats(await freePort());
  scope.defer('nats-server', () => nats.dispose());
  scope.tempDir(nats.dir);
  const natsStart = nats.restart();
  if (nats.proc) scope.track(nats.proc);
  await natsStart;
  const redis = new TestRedis(await freePort());
  scope.defer('redis-server', () => redis.dispose());
  const redisStart = redis.restart();
  if (redis.proc) scope.track(redis.proc);
  await redisStart;
  return { nats, redis };
}

/**
 * Spawns a compiled app (`script` relative to the repository root) the way libs/testing's
 * startDiscovery/startPolicy do, but tracked before it is ready, so an app that never becomes
 * ready is still stopped. With `profileDir` it writes a V8 CPU profile named `profileName`.
 */
export function spawnApp(scope, testing, { name, script, env, profileDir, profileName, flags = [] }) {
  const { ManagedProcess, repoRoot } = testing;
  const nodeArgs = [...flags, ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${profileName}`] : [])];
  const p = new ManagedProcess(name, process.execPath, [...nodeArgs, resolve(repoRoot, script)], env);
  scope.track(p);
  scope.defer(name, () => p.stop('SIGTERM', 8_000));
  return p;
}

/** A NATS connection closed when the scope ends. */
export async function connectScoped(scope, natsLib, url, name, what) {
  const nc = await natsLib.connect({ servers: url, name, timeout: 5_000 });
  scope.defer(what, () => nc.close());
  return nc;
}

/** Counts dead letters on `ctx` (deadLetters, firstDeadLetter) and shows the first one. */
export function watchDeadLetters(nc, ctx) {
  nc.subscribe('mesh.v1.deadletter.>', {
    callback: (err, msg) => {
      if (err) return;
      ctx.deadLetters++;
      if (!ctx.firstDeadLetter) {
        ctx.firstDeadLetter = msg.string().slice(0, 500);
        note(`  dead letter on ${msg.subject}: ${ctx.firstDeadLetter}`);
      }
    },
  });
}
