import { ErrorCode, MeshError } from '@novamesh/contracts';
import type { MeshManager } from '@novamesh/sdk';
import type { Command } from 'commander';
import { CommandExit, ExitCode, toMeshError } from './errors';
import { parseServers } from './options';
import { withSpinner } from './spinner';

/** Everything meshctl takes from its environment; built once in main.ts and frozen. */
export interface CliConfig {
  /** Default of `--nats` (NATS_URL, else the local server). */
  natsUrl: string;
  /** Draw spinners: stderr is an interactive terminal. */
  spinner: boolean;
  /** Color marks (`meshctl check`): stdout is a terminal and NO_COLOR is not set. */
  color: boolean;
  /** Print stack traces of unexpected errors (MESHCTL_DEBUG=1). */
  debug: boolean;
}

export interface TextSink {
  write(text: string): unknown;
}

export interface CliIo {
  stdout: TextSink;
  stderr: TextSink;
  stdin: NodeJS.ReadableStream;
}

/** What every command receives: config, streams, and the Ctrl-C signal. Shared, read-only. */
export interface CliContext {
  readonly config: Readonly<CliConfig>;
  readonly io: CliIo;
  /** Aborted on the first Ctrl-C / SIGTERM. */
  readonly signal: AbortSignal;
  /** Runs `work` with a spinner saying `text` on stderr (only on a terminal). */
  spin<T>(text: string, work: Promise<T>): Promise<T>;
}

export function createContext(config: Readonly<CliConfig>, io: CliIo, signal: AbortSignal): CliContext {
  return {
    config,
    io,
    signal,
    spin: (text, work) => withSpinner(io.stderr, config.spinner, text, work),
  };
}

/** The global options (`--nats`, `--timeout`), validated. */
export interface GlobalOptions {
  servers: string[];
  timeoutMs: number;
}

export function globalOptions(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<{ nats: string; timeout: number }>();
  try {
    return { servers: parseServers(o.nats), timeoutMs: o.timeout };
  } catch (e) {
    // The default comes from NATS_URL and is not seen by commander's parser: report it as usage.
    return cmd.error(`error: invalid --nats / NATS_URL: ${(e as Error).message}`, {
      exitCode: ExitCode.usage,
      code: 'meshctl.invalidNats',
    });
  }
}

/**
 * Connects a MeshManager for one command, runs `fn`, and always closes the connection. The
 * manager sends no heartbeats: meshctl exits right after, so it must not pretend to be the
 * workload (services that want heartbeats say so in their manifest). Errors leave as MeshError
 * (or as the CommandExit `fn` threw).
 */
export async function withMesh<T>(ctx: CliContext, cmd: Command, fn: (mesh: MeshManager) => Promise<T>): Promise<T> {
  const { servers, timeoutMs } = globalOptions(cmd);
  // Loaded on demand: the SDK pulls in the whole bus stack, which usage errors and local
  // manifest checks do not need to wait for.
  const { MeshManager } = await import('@novamesh/sdk');
  const mesh = new MeshManager({ servers, timeoutMs, name: 'meshctl', heartbeat: false });
  try {
    await ctx.spin(`connecting to ${servers.join(',')}`, untilAborted(mesh.initialize({ signal: ctx.signal }), ctx.signal));
    return await fn(mesh);
  } catch (e) {
    if (e instanceof CommandExit) throw e;
    throw toMeshError(e);
  } finally {
    await mesh.close();
  }
}

/** `work`, or a MESH_ABORTED rejection as soon as `signal` aborts (for calls that take no signal). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new MeshError(ErrorCode.aborted, 'interrupted'));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
