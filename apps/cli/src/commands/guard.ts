import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The guard: a small process that stops meshctl's children when meshctl itself ends without
 * stopping them — killed by SIGKILL or the OOM killer, where no handler of meshctl's runs. The
 * children live in process groups of their own (so that the terminal's Ctrl-C reaches meshctl
 * alone), so nothing else would stop them: a sidecar would go on answering and heartbeating for a
 * workload whose supervisor is gone, and hold its ports against the next `meshctl run`.
 *
 * meshctl tells the guard, over an IPC channel, each child it starts (`watch`) and each that ended
 * (`unwatch`). When the channel closes (meshctl is gone) with children still watched, the guard
 * stops them as meshctl would have: the last started first (the sidecar deregisters and drains
 * while the app still answers), each with SIGTERM to its process group, then SIGKILL once its
 * grace period is over; then it exits. A channel that closes with nothing watched (meshctl ended
 * normally) ends the guard at once. The guard runs in a process group of its own and ignores
 * SIGINT and SIGHUP, so the Ctrl-C meant for meshctl does not end it.
 *
 * A process number is only meshctl's child while that process lives: once it (and, for a group,
 * every member) is gone, the kernel may give the number to a new process. So each watch carries the
 * child's start time (Linux: `/proc/<pid>/stat`), and a process found under that number with
 * another start time is someone else's and is never signalled.
 */

/** A message from meshctl to its guard. */
export type GuardMessage =
  | { type: 'watch'; pid: number; group: boolean; graceMs: number; startTime?: string }
  | { type: 'unwatch'; pid: number };

/** What meshctl holds of its guard. Every method is a no-op once the guard is gone. */
export interface Guard {
  /** From now on, `pid` is stopped (SIGTERM, then SIGKILL after `graceMs`) should meshctl end without stopping it. */
  watch(pid: number, group: boolean, graceMs: number): void;
  /** `pid` ended (or was stopped by meshctl): nothing for the guard to do about it. */
  unwatch(pid: number): void;
}

/** How often the guard looks whether a process it stopped is gone. */
const POLL_MS = 50;

/** The compiled guard script: next to this module in dist, or dist's copy when this runs from the sources (tests). */
function guardEntry(): string | undefined {
  return [join(__dirname, 'guard.js'), join(__dirname, '..', '..', 'dist', 'commands', 'guard.js')].find((p) => existsSync(p));
}

/**
 * Starts the guard of this meshctl process. Without a compiled guard (or on Windows, where process
 * groups and SIGKILL-proof cleanup work differently), returns a guard that does nothing: meshctl
 * still stops its children on every ending it sees.
 */
export function startGuard(): Guard {
  const entry = process.platform === 'win32' ? undefined : guardEntry();
  if (!entry) return { watch: () => undefined, unwatch: () => undefined };
  const child: ChildProcess = spawn(process.execPath, [entry], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'], detached: true });
  // Neither the guard nor its channel keeps meshctl running; an error (it could not start) leaves meshctl unguarded.
  child.unref();
  child.channel?.unref();
  child.on('error', () => undefined);
  const send = (m: GuardMessage) => {
    if (child.connected) child.send(m, (err) => err && undefined);
  };
  return {
    watch: (pid, group, graceMs) => send({ type: 'watch', pid, group, graceMs, startTime: processStartTime(pid) }),
    unwatch: (pid) => send({ type: 'unwatch', pid }),
  };
}

/**
 * When the process `pid` started (clock ticks since boot, field 22 of `/proc/<pid>/stat`), or
 * undefined where there is no such process or no /proc to tell.
 */
export function processStartTime(pid: number | string): string | undefined {
  return statFields(pid)?.[22 - 3];
}

/** `/proc/<pid>/stat` from field 3 (state) on, or undefined where there is no such process or no /proc. */
function statFields(pid: number | string): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // Fields after the command name, which is in parentheses and may hold anything: state is field 3.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * Whether every process of `pid` (of its group, with `group`) has exited and waits only to be
 * reaped (a zombie): gone for the guard. Its parent was meshctl, which is gone, so init reaps it,
 * and some inits do that only every second or two. False where /proc cannot tell.
 */
function onlyZombies(pid: number, group: boolean): boolean {
  if (!group) return statFields(pid)?.[0] === 'Z';
  let members: string[];
  try {
    members = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return false;
  }
  // Field 5 is the process group.
  return members.every((d) => {
    const f = statFields(d);
    return !f || f[5 - 3] !== String(pid) || f[0] === 'Z';
  });
}

/** A watched process: how to stop it, and when it started (to tell it from a later holder of its number). */
interface Watched {
  pid: number;
  group: boolean;
  graceMs: number;
  startTime?: string;
}

/**
 * Whether the number now belongs to another process than the one watched: one runs under it with
 * another start time. (No process under the number is not another: a group outlives its leader,
 * and its number is not given out again while the group has members.)
 */
function reused(w: Watched): boolean {
  if (w.startTime === undefined) return false;
  const now = processStartTime(w.pid);
  return now !== undefined && now !== w.startTime;
}

function alive(w: Watched): boolean {
  if (reused(w)) return false;
  const { pid, group } = w;
  try {
    process.kill(group ? -pid : pid, 0);
    return !onlyZombies(pid, group);
  } catch (e) {
    // EPERM: it exists (another user's process now holds the number: not ours to signal, but not gone).
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signal(w: Watched, sig: NodeJS.Signals): void {
  if (reused(w)) return;
  const { pid, group } = w;
  try {
    process.kill(group ? -pid : pid, sig);
  } catch {
    // Gone already.
  }
}

/** Stops one watched process: SIGTERM, then SIGKILL once `graceMs` is over; resolves when it is gone (or after the SIGKILL). */
async function stopOne(w: Watched): Promise<void> {
  signal(w, 'SIGTERM');
  const deadline = Date.now() + w.graceMs;
  while (alive(w) && Date.now() < deadline) await new Promise((r) => setTimeout(r, POLL_MS));
  if (alive(w)) signal(w, 'SIGKILL');
}

/** The guard process itself (this file run as a script by {@link startGuard}). */
export function runGuard(): void {
  const watched = new Map<number, Watched>();
  // The terminal's signals are meshctl's to act on (SIGTERM still ends the guard: a shutting-down system).
  for (const s of ['SIGINT', 'SIGHUP'] as const) process.on(s, () => undefined);
  process.on('message', (m: GuardMessage) => {
    if (m?.type === 'watch' && Number.isInteger(m.pid) && m.pid > 1)
      watched.set(m.pid, {
        pid: m.pid,
        group: m.group === true,
        graceMs: Number(m.graceMs) || 0,
        ...(typeof m.startTime === 'string' ? { startTime: m.startTime } : {}),
      });
    else if (m?.type === 'unwatch') watched.delete(m.pid);
  });
  process.on('disconnect', async () => {
    // The last started first: meshctl starts the app, then its sidecar, and stops them the other way round.
    for (const w of [...watched.values()].reverse()) await stopOne(w);
    process.exit(0);
  });
}

if (require.main === module) runGuard();
