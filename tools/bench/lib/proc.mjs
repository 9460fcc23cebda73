// Reads a process's memory and CPU time from /proc (Linux only; returns undefined elsewhere).
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

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

/**
 * Time `pid`'s threads have spent so far running and runnable but waiting for a CPU (the run
 * queue), in seconds with nanosecond resolution, summed from /proc/<pid>/task/<tid>/schedstat.
 * Threads that ended are missing from the sums, so compare two readings only over a window in
 * which none ends. Undefined where the kernel keeps no schedstats (it then reports zeros).
 */
export function schedOf(pid) {
  if (!pid) return undefined;
  let run = 0;
  let wait = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const [r, w] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ');
        run += Number(r);
        wait += Number(w);
      } catch {
        // the thread ended between the listing and the read
      }
    }
  } catch {
    return undefined;
  }
  return run > 0 ? { run: run / 1e9, wait: wait / 1e9 } : undefined;
}

/**
 * CPU seconds `pid` has used so far with nanosecond resolution (`schedOf`; the clock-tick figures
 * of `cpuSecondsOf` are 10 ms coarse, too coarse for windows of tens of milliseconds), or
 * `cpuSecondsOf` where schedstat is not available.
 */
export function preciseCpuSecondsOf(pid) {
  return schedOf(pid)?.run ?? cpuSecondsOf(pid);
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

/**
 * CPU used by a set of named processes during chosen windows only (e.g. while a change
 * propagates, leaving out the pauses between changes): `const w = windowCpuMeter(pids);
 * w.open(); …; w.close();` any number of times, then `w.result()` → cores busy on average over
 * the open time, per process (`preciseCpuSecondsOf`), for this process ('bench'), 'other' and the
 * 'whole machine' (/proc/stat: 10 ms ticks, so only a sum over several windows is meaningful);
 * and `w.perWindow()` → per process, the milliseconds per window its threads ran and waited
 * runnable for a CPU (`schedOf`; processes without schedstats are left out).
 */
export function windowCpuMeter(pids) {
  const used = {};
  const sched = {};
  let windows = 0;
  let wall = 0;
  let machineBusy = 0;
  let opened;
  return {
    open() {
      opened = {
        at: performance.now(),
        procs: Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, preciseCpuSecondsOf(pid)])),
        sched: Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, schedOf(pid)])),
        self: process.cpuUsage(),
        machine: machineCpuSeconds(),
      };
    },
    close() {
      if (!opened) return;
      const o = opened;
      opened = undefined;
      for (const [k, pid] of Object.entries(pids)) {
        const end = preciseCpuSecondsOf(pid);
        if (end !== undefined && o.procs[k] !== undefined) used[k] = (used[k] ?? 0) + Math.max(0, end - o.procs[k]);
        const s = schedOf(pid);
        if (s && o.sched[k]) {
          sched[k] ??= { ran: 0, waited: 0 };
          sched[k].ran += Math.max(0, s.run - o.sched[k].run);
          sched[k].waited += Math.max(0, s.wait - o.sched[k].wait);
        }
      }
      const self = process.cpuUsage(o.self);
      used.bench = (used.bench ?? 0) + (self.user + self.system) / 1e6;
      const machine = machineCpuSeconds();
      if (machine && o.machine) machineBusy += machine.busy - o.machine.busy;
      wall += (performance.now() - o.at) / 1000;
      windows++;
    },
    result() {
      if (!wall) return {};
      const out = Object.fromEntries(Object.entries(used).map(([k, v]) => [k, round(v / wall, 2)]));
      const ours = Object.values(used).reduce((a, b) => a + b, 0);
      out.other = round(Math.max(0, machineBusy - ours) / wall, 2);
      out['whole machine'] = round(machineBusy / wall, 2);
      return out;
    },
    perWindow() {
      if (!windows) return {};
      return Object.fromEntries(
        Object.entries(sched).map(([k, v]) => [
          k,
          { ran: round((v.ran * 1000) / windows, 1), waited: round((v.waited * 1000) / windows, 1) },
        ]),
      );
    },
  };
}
