import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ManagedProcess, pidAlive, repoRoot, TestNats, TestRedis, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// `npm start` without the demo, on servers of its own: how what it started ends with it.
let nats: TestNats;
let redis: TestRedis;
let dir: string;
const started: ManagedProcess[] = [];

beforeAll(async () => {
  [nats, redis] = await Promise.all([TestNats.start(), TestRedis.start()]);
  dir = mkdtempSync(join(tmpdir(), 'novamesh-start-'));
});
afterAll(async () => {
  await Promise.all(started.map((p) => p.stop('SIGKILL')));
  await Promise.all([nats?.dispose(), redis?.dispose()]);
  rmSync(dir, { recursive: true, force: true });
});

const APPS = ['discovery', 'policy', 'certificate-authority', 'proxy-config'];

/** The process numbers of `pid`'s children (Linux /proc). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function argv(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

/**
 * Starts `tools/start.mjs --no-demo` as `cmd` runs it and waits until every app is ready; returns
 * the process and the apps' process numbers (start.mjs's children that run an app's main.js).
 */
async function start(cmd: string, args: string[], opts: { detached?: boolean } = {}) {
  const proc = new ManagedProcess(
    'npm-start',
    cmd,
    args,
    {
      NATS_URL: nats.url,
      REDIS_URL: redis.url,
      NOVAMESH_DEMO: '0',
      CA_DIR: join(dir, `ca-${started.length}`),
      CA_METRICS_PORT: String(await freePort()),
    },
    repoRoot,
    opts,
  );
  started.push(proc);
  for (const app of APPS) await proc.waitForLine(new RegExp(`"msg":"${app} ready"`), 60_000);
  const script = await waitFor(
    () => [proc.pid as number, ...childrenOf(proc.pid as number)].find((p) => argv(p).includes('tools/start.mjs')),
    { timeoutMs: 5_000, what: 'start.mjs' },
  );
  const apps = childrenOf(script).filter((p) => argv(p).some((a) => a.endsWith('/dist/main.js')));
  expect(apps).toHaveLength(APPS.length);
  return { proc, script, apps };
}

async function allGone(pids: number[]): Promise<void> {
  await waitFor(() => pids.every((p) => !pidAlive(p)) || undefined, { timeoutMs: 20_000, what: 'every app to exit' });
}

const drainSignals = (proc: ManagedProcess) =>
  proc.output.filter((l) => l.includes('"msg":"draining"')).map((l) => (JSON.parse(l) as { signal: string }).signal);

describe('npm start', () => {
  it('stops the apps when the process that ran it ends without passing a signal on (SIGTERM to npm)', async () => {
    // As npm runs it: a shell in between, which here stays (`; exit`) and is killed outright.
    const { proc, script, apps } = await start('sh', ['-c', 'node tools/start.mjs --no-demo; exit $?']);
    process.kill(proc.pid as number, 'SIGKILL');
    await allGone([script, ...apps]);
    expect(proc.output).toContain('novamesh: stopping…');
    expect(drainSignals(proc)).toEqual(['SIGTERM', 'SIGTERM', 'SIGTERM', 'SIGTERM']);
    expect(proc.output.filter((l) => l.includes('"msg":"stopped"'))).toHaveLength(APPS.length);
  }, 90_000);

  it('on Ctrl-C (SIGINT to its process group) the apps hear nothing from the terminal: start.mjs stops them, with SIGTERM', async () => {
    const { proc, script, apps } = await start(process.execPath, ['tools/start.mjs', '--no-demo'], { detached: true });
    process.kill(-(proc.pid as number), 'SIGINT');
    await allGone([script, ...apps]);
    expect(drainSignals(proc)).toEqual(['SIGTERM', 'SIGTERM', 'SIGTERM', 'SIGTERM']);
  }, 90_000);

  it('leaves no app running when start.mjs itself is killed (SIGKILL): the guard stops them', async () => {
    const { proc, apps } = await start(process.execPath, ['tools/start.mjs', '--no-demo']);
    process.kill(proc.pid as number, 'SIGKILL');
    await allGone(apps);
    expect(drainSignals(proc)).toEqual(['SIGTERM', 'SIGTERM', 'SIGTERM', 'SIGTERM']);
  }, 90_000);
});
