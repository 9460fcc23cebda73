import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { JetStreamApiError, type JetStreamManager } from '@nats-io/jetstream';

/** A port nobody listens on right now (loopback). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  srv.close();
  await once(srv, 'close');
  return port;
}

/** What `waitFor` can return: `T` without the falsy values it waits past. */
export type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

/** Polls `fn` until it returns a truthy value (returned) or `timeoutMs` passes (throws with `what`). */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<Truthy<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as Truthy<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${opts.what ?? 'condition'}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 50));
  }
}

const live = new Set<ChildProcess>();
// Never leave servers or apps behind when a test run (or a benchmark) ends abruptly.
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * Deletes stream `name` and creates it again with the same configuration, as an operator or a
 * nats-server that lost the stream would: same name, sequences starting over, no messages. A
 * service that owns the stream may notice it missing in between and create it first (with the
 * mesh's configuration for it); the stream then gets this configuration back.
 */
export async function recreateStream(jsm: JetStreamManager, name: string): Promise<void> {
  const { config } = await jsm.streams.info(name);
  await jsm.streams.delete(name);
  try {
    await jsm.streams.add(config);
  } catch (e) {
    if (!(e instanceof JetStreamApiError && e.code === 10058)) throw e; // 10058: the name is in use (another configuration)
    await jsm.streams.update(name, config);
  }
  const { messages } = (await jsm.streams.info(name)).state;
  if (messages !== 0) throw new Error(`stream ${name} holds ${messages} messages after being created again`);
}

/** Whether a process of that number runs (signal 0). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A child process whose output is kept for assertions and diagnostics; killed when this process exits. */
export class ManagedProcess {
  readonly output: string[] = [];
  private child: ChildProcess;
  readonly exited: Promise<number | null>;

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    env: NodeJS.ProcessEnv = {},
    cwd?: string,
    /** `detached`: in a process group of its own (which the test may signal as a terminal would). */
    opts: { detached?: boolean } = {},
  ) {
    this.child = spawn(cmd, args, {
      env: { ...process.env, ...env },
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: opts.detached ?? false,
    });
    const keep = (b: Buffer) => {
      for (const line of b.toString().split('\n')) if (line) this.output.push(line);
      if (this.output.length > 20_000) this.output.splice(0, 10_000);
    };
    this.child.stdout?.on('data', keep);
    this.child.stderr?.on('data', keep);
    live.add(this.child);
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        live.delete(this.child);
        resolve(code);
      }),
    );
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves when a line matches; rejects when the process exits first or time runs out. */
  async waitForLine(pattern: RegExp, timeoutMs = 20_000): Promise<string> {
    const found = await waitFor(
      () => {
        const line = this.output.find((l) => pattern.test(l));
        if (!line && !this.running) throw new Error(`${this.name} exited:\n${this.output.slice(-30).join('\n')}`);
        return line;
      },
      { timeoutMs, what: `${this.name} to print ${pattern}` },
    ).catch((e) => {
      throw new Error(`${(e as Error).message}\n--- ${this.name} output ---\n${this.output.slice(-40).join('\n')}`);
    });
    return found;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.child.kill(signal);
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.child.kill(signal);
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(t);
  }
}

function which(names: string[]): string {
  for (const n of names) if (n.startsWith('/') ? exists(n) : true) return n;
  return names[names.length - 1] as string;
}
function exists(p: string): boolean {
  try {
    return existsSync(p);
  } catch {
    return false;
  }
}

/**
 * The nats-server tests start: `NATS_SERVER_BIN`, else the one `tools/fetch-nats-server.sh` put
 * under `.cache/` (it fetches one only while the machine's is older than 2.10; delete `.cache/`
 * after upgrading the machine's to use that), else the machine's.
 */
export function natsServerBinary(): string {
  const fetched = resolve(__dirname, '..', '..', '..', '.cache', 'nats-server', 'nats-server');
  return process.env.NATS_SERVER_BIN ?? which([fetched, '/usr/sbin/nats-server', '/usr/local/bin/nats-server', 'nats-server']);
}

/** A nats-server with JetStream on a free port and its own store, for one test file. */
export class TestNats {
  private proc: ManagedProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), 'novamesh-nats-'));
  constructor(
    readonly port: number,
    /** nats-server configuration file content (e.g. `max_payload: 8KB`), besides the command-line flags. */
    private readonly config?: string,
  ) {}

  static async start(opts: { config?: string } = {}): Promise<TestNats> {
    const n = new TestNats(await freePort(), opts.config);
    await n.restart();
    return n;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async restart(): Promise<void> {
    const bin = natsServerBinary();
    const args = ['-a', '127.0.0.1', '-p', String(this.port), '-js', '-sd', this.dir];
    if (this.config !== undefined) {
      const file = join(this.dir, 'nats-server.conf');
      writeFileSync(file, this.config);
      args.push('-c', file);
    }
    this.proc = new ManagedProcess('nats-server', bin, args);
    await this.proc.waitForLine(/Server is ready/);
  }

  async stop(): Promise<void> {
    await this.proc?.stop('SIGTERM');
  }

  /**
   * Stops the server without closing anything (SIGSTOP): connections stay open and nothing is
   * answered, as from a server that hangs, until {@link thaw}.
   */
  freeze(): void {
    if (this.proc?.pid) process.kill(this.proc.pid, 'SIGSTOP');
  }

  /** Lets a frozen server go on (SIGCONT). */
  thaw(): void {
    if (this.proc?.pid) process.kill(this.proc.pid, 'SIGCONT');
  }

  /** Whether the server still runs, and its last log lines: for a test's failure message. */
  diagnostics(lines = 20): string {
    if (!this.proc) return 'nats-server: not started';
    const out = this.proc.output;
    // A Go panic prints its reason first and hundreds of goroutine lines after it: show the reason.
    const panicAt = out.findIndex((l) => /^(panic|fatal error):/.test(l));
    const panic = panicAt >= 0 ? `its panic:\n${out.slice(panicAt, panicAt + 12).join('\n')}\n` : '';
    return `nats-server ${this.proc.running ? 'running' : 'EXITED'}; ${panic}its last lines:\n${out.slice(-lines).join('\n')}`;
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A redis-server on a free port that keeps nothing on disk, which tests may stop and restart. */
export class TestRedis {
  private proc: ManagedProcess | undefined;
  constructor(readonly port: number) {}

  static async start(): Promise<TestRedis> {
    const r = new TestRedis(await freePort());
    await r.restart();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async restart(): Promise<void> {
    const bin = process.env.REDIS_SERVER_BIN ?? which(['/usr/bin/redis-server', '/usr/local/bin/redis-server', 'redis-server']);
    this.proc = new ManagedProcess('redis-server', bin, [
      '--bind',
      '127.0.0.1',
      '--port',
      String(this.port),
      '--save',
      '',
      '--appendonly',
      'no',
    ]);
    await this.proc.waitForLine(/Ready to accept connections/);
  }

  async stop(): Promise<void> {
    await this.proc?.stop('SIGTERM');
  }

  async dispose(): Promise<void> {
    await this.stop();
  }
}
