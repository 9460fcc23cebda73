// Reads a process's memory and CPU time from /proc (Linux only; returns undefined elsewhere).
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let clkTck;
function ticksPerSecond() {
  if (clkTck === undefined) {
    const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
    clkTck = Number(r.stdout?.trim()) || 100;
  }
  return clkTck;
}

/** VmRSS and VmHWM (peak RSS) of `pid` in bytes. */
export function memoryOf(pid) {
  if (!pid) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key) => {
      const m = status.match(new RegExp(`^${key}:\\s+(\\d+)\\s+kB`, 'm'));
      return m ? Number(m[1]) * 1024 : undefined;
    };
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/** User + system CPU seconds `pid` has used so far. */
export function cpuSecondsOf(pid) {
  if (!pid) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces; fields after its closing ')' are fixed.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return (utime + stime) / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/** Busy and total CPU seconds of the whole machine (all cores), from /proc/stat. */
export function machineCpuSeconds() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = user + nice + system + irq + softirq + steal;
    return { busy: busy / ticksPerSecond(), total: (busy + idle + iowait) / ticksPerSecond() };
  } catch {
    return undefined;
  }
}

/**
 * Measures CPU used by a set of named processes over an interval:
 * `const m = cpuMeter({ discovery: pid }); …; m.stop()` → { discovery: 0.93, bench: 0.2, 'whole machine': 1.6 }
 * (cores busy on average).
 */
export function cpuMeter(pids) {
  const start = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSecondsOf(pid)]));
  const self0 = process.cpuUsage();
  const machine0 = machineCpuSeconds();
  const t0 = performance.now();
  return {
    stop() {
      const wall = (performance.now() - t0) / 1000;
      const out = {};
      for (const [k, pid] of Object.entries(pids)) {
        const end = cpuSecondsOf(pid);
        if (end !== undefined && start[k] !== undefined) out[k] = round((end - start[k]) / wall, 2);
      }
      const self = process.cpuUsage(self0);
      out.bench = round((self.user + self.system) / 1e6 / wall, 2);
      const machine1 = machineCpuSeconds();
      if (machine0 && machine1) {
        const whole = (machine1.busy - machine0.busy) / wall;
        const ours = Object.values(out).reduce((a, b) => a + b, 0);
        // Whatever else ran meanwhile (other processes, kernel work on their behalf): the noise.
        out.other = round(Math.max(0, whole - ours), 2);
        out['whole machine'] = round(whole, 2);
      }
      return out;
    },
  };
}

function round(x, digits) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
