// Finds NATS and Redis, or starts local ones with data under .data/ (used by `npm start` and CI).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

export function reachable(url, timeoutMs = 1000) {
  const u = new URL(url.split(',')[0]);
  return new Promise((resolve) => {
    const s = connect({ host: u.hostname, port: Number(u.port) });
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function findBinary(name) {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/bin', '/opt/homebrew/bin']) {
    const p = join(dir, name);
    if (spawnSync('test', ['-x', p]).status === 0) return p;
  }
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

const HOW_TO_INSTALL = {
  'nats-server':
    'Debian/Ubuntu: sudo apt-get install nats-server (Debian 12 has 2.9, older than the 2.10 Novamesh needs: then also run tools/fetch-nats-server.sh) · macOS: brew install nats-server · or download from the NATS releases page',
  'redis-server': 'Debian/Ubuntu: sudo apt-get install redis-server · macOS: brew install redis',
};

async function waitReachable(url, what, ms = 15_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await reachable(url, 300)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not start listening on ${url}`);
}

/**
 * Ensures NATS (JetStream) and Redis are reachable at the URLs; starts local servers with data
 * under `<root>/.data` when they are not. Returns the child processes it started.
 */
export async function ensureInfra(root, natsUrl, redisUrl, log = (m) => process.stderr.write(`${m}\n`)) {
  const started = [];
  const data = join(root, '.data');
  if (!(await reachable(natsUrl))) {
    // A nats-server of 2.10 or later that tools/fetch-nats-server.sh fetched (the machine's is older) goes first.
    const fetched = join(root, '.cache', 'nats-server', 'nats-server');
    const bin = spawnSync('test', ['-x', fetched]).status === 0 ? fetched : findBinary('nats-server');
    if (!bin)
      throw new Error(
        `NATS is not reachable at ${natsUrl} and nats-server is not installed.\n  Install it: ${HOW_TO_INSTALL['nats-server']}`,
      );
    const port = new URL(natsUrl.split(',')[0]).port || '4222';
    mkdirSync(join(data, 'nats'), { recursive: true });
    const out = openSync(join(data, 'nats.log'), 'a');
    log(`starting nats-server -js on 127.0.0.1:${port} (data in .data/nats, log in .data/nats.log)`);
    started.push(
      spawn(bin, ['-a', '127.0.0.1', '-p', port, '-js', '-sd', join(data, 'nats')], { stdio: ['ignore', out, out], detached: true }),
    );
    await waitReachable(natsUrl, 'nats-server');
  }
  if (!(await reachable(redisUrl))) {
    const bin = findBinary('redis-server');
    if (!bin)
      throw new Error(
        `Redis is not reachable at ${redisUrl} and redis-server is not installed.\n  Install it: ${HOW_TO_INSTALL['redis-server']}`,
      );
    const port = new URL(redisUrl).port || '6379';
    mkdirSync(join(data, 'redis'), { recursive: true });
    const out = openSync(join(data, 'redis.log'), 'a');
    log(`starting redis-server on 127.0.0.1:${port} (data in .data/redis, log in .data/redis.log)`);
    started.push(
      spawn(bin, ['--bind', '127.0.0.1', '--port', port, '--dir', join(data, 'redis')], { stdio: ['ignore', out, out], detached: true }),
    );
    await waitReachable(redisUrl, 'redis-server');
  }
  return started;
}
