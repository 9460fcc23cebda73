import { type ChildProcess, fork, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { waitFor } from '@novamesh/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { type GuardMessage, processStartTime } from './guard';

// The guard process (dist's compiled script) against real processes: what it stops once its
// channel to meshctl closes, and what it leaves alone.
const entry = join(__dirname, '..', '..', 'dist', 'commands', 'guard.js');
const started: ChildProcess[] = [];

afterEach(() => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** A process that runs until signalled (in a group of its own when `group`). */
async function victim(group: boolean): Promise<ChildProcess> {
  const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore', detached: group });
  started.push(c);
  await once(c, 'spawn');
  return c;
}

/** Starts a guard, sends it `messages`, then closes its channel as meshctl's end would; resolves when the guard exits. */
async function guardWith(messages: GuardMessage[]): Promise<void> {
  const guard = fork(entry, [], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  started.push(guard);
  await once(guard, 'spawn');
  for (const m of messages) await new Promise<void>((resolve, reject) => guard.send(m, (err) => (err ? reject(err) : resolve())));
  const exited = once(guard, 'exit');
  guard.disconnect();
  await exited;
}

const ended = (c: ChildProcess) => c.exitCode !== null || c.signalCode !== null;

describe('the guard', () => {
  it('reads a process’s start time, and a later process has another', async () => {
    const a = await victim(false);
    const first = processStartTime(a.pid as number);
    expect(first).toMatch(/^\d+$/);
    expect(processStartTime(a.pid as number)).toBe(first);
    expect(processStartTime(2 ** 22 + 1)).toBeUndefined();
  });

  it('stops a watched process and a watched group once meshctl’s channel closes', async () => {
    const plain = await victim(false);
    const grouped = await victim(true);
    await guardWith([
      { type: 'watch', pid: plain.pid as number, group: false, graceMs: 2_000, startTime: processStartTime(plain.pid as number) },
      { type: 'watch', pid: grouped.pid as number, group: true, graceMs: 2_000, startTime: processStartTime(grouped.pid as number) },
    ]);
    await waitFor(() => ended(plain) && ended(grouped), { timeoutMs: 3_000, what: 'both stopped' });
    expect([plain.signalCode, grouped.signalCode]).toEqual(['SIGTERM', 'SIGTERM']);
  });

  it('goes on to the next process as soon as one has exited, though nobody has reaped it yet (a zombie)', async () => {
    // The watched process's parent execs into a program that never reaps it: once it exits it stays
    // a zombie, as meshctl's children do until init reaps them (some inits take a second or two).
    const parent = spawn('sh', ['-c', `${JSON.stringify(process.execPath)} -e "setInterval(() => {}, 1000)" & echo $!; exec sleep 60`], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    started.push(parent);
    const [line] = (await once(parent.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
    const zombie = Number(line.toString().trim());
    const next = await victim(false);
    const t0 = Date.now();
    await guardWith([
      { type: 'watch', pid: next.pid as number, group: false, graceMs: 5_000, startTime: processStartTime(next.pid as number) },
      { type: 'watch', pid: zombie, group: false, graceMs: 5_000, startTime: processStartTime(zombie) },
    ]);
    await waitFor(() => ended(next), { timeoutMs: 3_000, what: 'the next process stopped' });
    expect(next.signalCode).toBe('SIGTERM');
    // Not after the zombie's grace period (5 s) ran out.
    expect(Date.now() - t0).toBeLessThan(3_000);
  });

  it('leaves alone a process that holds a watched number but started at another time (the number was reused)', async () => {
    const other = await victim(true);
    const startTime = String(Number(processStartTime(other.pid as number)) - 1);
    await guardWith([{ type: 'watch', pid: other.pid as number, group: true, graceMs: 2_000, startTime }]);
    await new Promise((r) => setTimeout(r, 300));
    expect(ended(other)).toBe(false);
  });

  it('leaves alone what meshctl said had ended', async () => {
    const a = await victim(false);
    const pid = a.pid as number;
    await guardWith([
      { type: 'watch', pid, group: false, graceMs: 2_000, startTime: processStartTime(pid) },
      { type: 'unwatch', pid },
    ]);
    await new Promise((r) => setTimeout(r, 300));
    expect(ended(a)).toBe(false);
  });
});
