import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error -- a plain .mjs module of the benchmark tools, without type declarations
import { schedOf, windowCpuMeter } from './proc.mjs';

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

/**
 * A node process that spins until it has used `busyMs` more of CPU time (whatever else the
 * machine runs) whenever it reads a line on stdin, and sleeps otherwise.
 */
function spinner(busyMs: number, cpu?: number): Promise<ChildProcess> {
  const node = [
    process.execPath,
    '-e',
    `const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
       process.stdin.on('data', () => { const end = cpu() + ${busyMs}; while (cpu() < end); process.stdout.write('done\\n'); });
       process.stdout.write('ready\\n');`,
  ];
  // Pinned to one CPU with taskset, so that two spinners take turns on it.
  const [cmd, ...args] = cpu === undefined ? node : ['taskset', '-c', String(cpu), ...node];
  const child = spawn(cmd as string, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve) => child.stdout?.once('data', () => resolve(child)));
}

function spin(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.stdout?.once('data', () => resolve());
    child.stdin?.write('go\n');
  });
}

const schedstats = existsSync(`/proc/${process.pid}/schedstat`);

describe.runIf(schedstats)('run and run-queue times from schedstat', () => {
  it('reads a process’s time on a CPU, which grows by what it spins and not while it sleeps', async () => {
    const child = await spinner(150);
    const before = schedOf(child.pid);
    await new Promise((r) => setTimeout(r, 100));
    const idle = schedOf(child.pid);
    expect(idle.run - before.run).toBeLessThan(0.03);
    await spin(child);
    const after = schedOf(child.pid);
    expect(after.run - idle.run).toBeGreaterThan(0.12);
    expect(schedOf(0)).toBeUndefined();
  });

  it('reports per window the ms each process ran and waited for a CPU, averaged over the windows, and nothing for the pauses', async () => {
    // Two spinners on the same CPU: while one runs, the other waits runnable.
    const a = await spinner(120, 0);
    const b = await spinner(120, 0);
    const quiet = await spinner(0);
    const meter = windowCpuMeter({ a: a.pid, b: b.pid, quiet: quiet.pid });
    for (let i = 0; i < 2; i++) {
      meter.open();
      await Promise.all([spin(a), spin(b)]);
      meter.close();
      // Spinning outside a window is not counted.
      await spin(a);
    }
    const w = meter.perWindow();
    for (const k of ['a', 'b']) {
      expect(w[k].ran, k).toBeGreaterThan(100);
      expect(w[k].ran, k).toBeLessThan(200);
    }
    // Each spent a good part of its window waiting for the CPU the other held.
    expect(w.a.waited + w.b.waited).toBeGreaterThan(60);
    expect(w.quiet.ran).toBeLessThan(20);
    expect(meter.result().a).toBeLessThan(1.05); // one CPU between them: neither ran more than the window
  });
});
