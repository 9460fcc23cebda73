import { type ChildProcess, type SpawnOptions, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { TextSink } from '../context';
import type { Guard } from './guard';

/**
 * The compiled sidecar (`@novamesh/sidecar`, apps/sidecar/dist/main.js). meshctl runs it as a child
 * process rather than importing it: apps do not import apps, and the sidecar owns its process
 * (signals, exit codes). Undefined when it is not built or not installed next to meshctl.
 */
export function sidecarEntry(): string | undefined {
  const candidates: string[] = [];
  try {
    candidates.push(require.resolve('@novamesh/sidecar'));
  } catch {
    // Not resolvable from here (e.g. meshctl copied alone): try the monorepo layout.
  }
  candidates.push(join(__dirname, '..', '..', '..', 'sidecar', 'dist', 'main.js'));
  return candidates.find((p) => existsSync(p));
}

/** A child's end as one exit code: its own, or 128 + the signal's number when a signal ended it. */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  return 128 + (signal ? (constants.signals[signal] ?? 1) : 1);
}

/** How long a child stopped with a signal has before it is killed, unless the caller says otherwise. */
export const STOP_GRACE_MS = 10_000;

/** A started child and the exit code it ends with (never rejects: a failed spawn ends with 127). */
export interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly exited: Promise<number>;
  readonly running: boolean;
  /** Sends `signal` if it still runs: to its whole process group when it has one of its own ({@link OWN_GROUP}). */
  signal(signal: NodeJS.Signals): void;
  /** Sends `signal` (if still running), then SIGKILL after `killAfterMs`; resolves with the exit code. */
  stop(signal: NodeJS.Signals, killAfterMs?: number): Promise<number>;
}

/**
 * Spawns `command`; a spawn failure (not found, not executable) is reported on `stderr` as `name: …`
 * and ends it with 127. With `guard`, the guard stops the child (SIGTERM, SIGKILL after `graceMs`)
 * should meshctl end without doing so itself.
 */
export function startChild(
  name: string,
  command: string,
  args: string[],
  opts: SpawnOptions,
  stderr: TextSink,
  guard?: { guard: Guard; graceMs: number },
): Child {
  const child = spawn(command, args, opts);
  let running = true;
  const pid = child.pid;
  if (guard && pid !== undefined) {
    guard.guard.watch(pid, opts.detached === true, guard.graceMs);
    child.once('exit', () => guard.guard.unwatch(pid));
  }
  // A child leading a process group of its own gets signals as the terminal would send them: to the
  // whole group, so that what it started (`sh -c`, npm scripts) stops with it, also after the
  // leader itself exited while something it started still runs (`sh -c 'a & b'`).
  const signal = (sig: NodeJS.Signals) => {
    if (opts.detached && child.pid !== undefined) {
      try {
        process.kill(-child.pid, sig);
        return;
      } catch {
        // The group is gone already; the child itself below.
      }
    }
    if (running) child.kill(sig);
  };
  // meshctl normally waits for its children; one still running when meshctl exits anyway (a crash)
  // is killed, as a child in its own process group would otherwise outlive it.
  const orphan = () => signal('SIGKILL');
  process.once('exit', orphan);
  child.once('exit', () => process.off('exit', orphan));
  const exited = new Promise<number>((resolve) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      if (!running) return;
      running = false;
      stderr.write(`error: cannot start ${name} (${command}): ${e.code === 'ENOENT' ? 'command not found' : e.message}\n`);
      resolve(127);
    });
    child.once('exit', (code, signal) => {
      running = false;
      resolve(exitCodeOf(code, signal));
    });
  });
  return {
    name,
    process: child,
    exited,
    get running() {
      return running;
    },
    signal,
    async stop(sig, killAfterMs = STOP_GRACE_MS) {
      signal(sig);
      const timer = setTimeout(() => signal('SIGKILL'), killAfterMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/**
 * Writes a child's output to `sink` line by line, each line prefixed (`[app] `). Keeps a partial
 * line until its end arrives, so lines of two children never interleave mid-line. Not shared
 * between streams.
 */
export class LinePrefixer {
  private pending = '';

  constructor(
    private readonly prefix: string,
    private readonly sink: TextSink,
    private readonly onLine?: (line: string) => void,
  ) {}

  write(chunk: Buffer | string): void {
    const text = this.pending + chunk.toString();
    const lines = text.split('\n');
    this.pending = lines.pop() ?? '';
    for (const line of lines) this.emit(line);
  }

  /** Writes the last line when it had no newline (the child ended). */
  flush(): void {
    if (this.pending) this.emit(this.pending);
    this.pending = '';
  }

  private emit(line: string): void {
    const clean = line.endsWith('\r') ? line.slice(0, -1) : line;
    this.onLine?.(clean);
    this.sink.write(`${this.prefix}${clean}\n`);
  }
}

/** Pipes a child's stdout and stderr to `out` and `err` through prefixers; `onLine` sees every line. */
export function prefixOutput(child: ChildProcess, prefix: string, out: TextSink, err: TextSink, onLine?: (line: string) => void): void {
  for (const [stream, sink] of [
    [child.stdout, out],
    [child.stderr, err],
  ] as const) {
    if (!stream) continue;
    const p = new LinePrefixer(prefix, sink, onLine);
    stream.on('data', (b: Buffer) => p.write(b));
    stream.on('end', () => p.flush());
  }
}

/** A loopback port nobody listens on right now (another process may take it before us: rare, and then the listener reports it). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  srv.close();
  await once(srv, 'close');
  return port;
}

function accepts(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Resolves `'listening'` once `host:port` accepts a TCP connection, `'exited'` when `until` settles
 * first (the app ended), `'timeout'` after `timeoutMs`, `'aborted'` when `signal` aborts.
 */
export async function waitForPort(
  port: number,
  host: string,
  opts: { timeoutMs: number; until: Promise<unknown>; signal: AbortSignal },
): Promise<'listening' | 'exited' | 'timeout' | 'aborted'> {
  let ended = false;
  opts.until.then(
    () => (ended = true),
    () => (ended = true),
  );
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (opts.signal.aborted) return 'aborted';
    if (ended) return 'exited';
    if (await accepts(port, host)) return 'listening';
    if (Date.now() > deadline) return 'timeout';
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Makes this command the one that decides what SIGINT/SIGTERM do: main.ts's handlers exit 2 s
 * after the first signal, too early for a sidecar that deregisters and drains. `onSignal` runs for
 * every signal (a second Ctrl-C may mean "hurry"); a closed terminal (SIGHUP) counts as SIGTERM,
 * since children in their own process groups ({@link OWN_GROUP}) do not get it. Returns a function
 * that removes the handlers.
 */
export function takeOverSignals(onSignal: (signal: NodeJS.Signals) => void): () => void {
  const handler = (signal: NodeJS.Signals) => onSignal(signal === 'SIGHUP' ? 'SIGTERM' : signal);
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) {
    process.removeAllListeners(s);
    process.on(s, handler);
  }
  // Output that can no longer be written (a reader like `| tee` gone with the same Ctrl-C: EPIPE;
  // a closed terminal: EIO) is dropped: the children still stop in order, instead of meshctl
  // exiting at once (and killing them) as a plain command whose reader left does.
  const outputGone = (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE' && e.code !== 'EIO' && e.code !== 'ERR_STREAM_DESTROYED') throw e;
  };
  const streams = [process.stdout, process.stderr];
  const before = streams.map((st) => st.listeners('error'));
  for (const st of streams) {
    st.removeAllListeners('error');
    st.on('error', outputGone);
  }
  return () => {
    for (const s of signals) process.off(s, handler);
    streams.forEach((st, i) => {
      st.off('error', outputGone);
      for (const l of before[i] ?? []) st.on('error', l as (e: Error) => void);
    });
  };
}

/**
 * Spawn options for the processes meshctl supervises: each in a process group of its own, so that
 * the terminal's Ctrl-C (sent to the whole foreground group) reaches meshctl only, which then
 * stops them in order — the sidecar drains while the app still answers, then the app stops —
 * instead of every process at once.
 */
export const OWN_GROUP: SpawnOptions = process.platform === 'win32' ? {} : { detached: true };
