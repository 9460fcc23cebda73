import { parseDuration } from '@novamesh/contracts';
import type { Command } from 'commander';
import { type CliContext, globalOptions, withMesh } from '../context';
import { CommandExit, ExitCode } from '../errors';
import { startGuard } from './guard';
import { addSidecarOptions, checkPorts, FlagError, flagPorts, type SidecarFlags, sidecarEnv, tokenFromFlags } from './sidecar-flags';
import { OWN_GROUP, sidecarEntry, startChild, takeOverSignals } from './supervise';

/** What starting a sidecar needs once the flags are checked: the program and its environment. */
export interface SidecarLaunch {
  entry: string;
  /** Node flags the sidecar runs with (see {@link SIDECAR_NODE_FLAGS}). */
  nodeArgs: string[];
  /** The full environment of the sidecar process (this process's, with the flags' SIDECAR_* over it). */
  env: NodeJS.ProcessEnv;
  /**
   * How long a stop may take before the sidecar is killed: its drain (SIDECAR_DRAIN, default 2 s)
   * plus the bounded steps around it, so a long drain is never cut off.
   */
  stopLimitMs: number;
}

/** The sidecar's own stop limit is its drain + 10 s (apps/sidecar main.ts); this waits 5 s longer. */
export function sidecarStopLimitMs(env: NodeJS.ProcessEnv): number {
  return (parseDuration(env.SIDECAR_DRAIN) ?? 2_000) + 15_000;
}

/**
 * A larger young generation: a sidecar allocates per request, and with V8's default (16 MiB)
 * semi-spaces its scavenges set the latency tail — at 1,000 req/s through one sidecar, p99 from the
 * send 4.5 ms by default, 1.9 ms with 64 MiB (measured here; docs/benchmarks.md).
 */
export const SIDECAR_NODE_FLAGS = ['--max-semi-space-size=64'];

/** Reports a FlagError as commander reports bad flags (exit 2); rethrows anything else. */
export function usageError(cmd: Command, e: unknown): never {
  if (e instanceof FlagError) cmd.error(`error: ${e.message}`, { exitCode: ExitCode.usage, code: 'meshctl.flags' });
  throw e;
}

/**
 * Checks the flags, finds the sidecar and builds its environment; with `--create-token`, asks the
 * certificate authority for a one-use join token first. Nothing is started here. Exits 2 on a bad
 * flag, 1 when the sidecar is not built, 3 when the CA cannot be reached for `--create-token`.
 */
export async function prepareSidecar(ctx: CliContext, cmd: Command, flags: SidecarFlags, appPort: number): Promise<SidecarLaunch> {
  const { servers } = globalOptions(cmd);
  let token: string | undefined;
  try {
    checkPorts(flagPorts({ ...flags, appPort }));
    token = tokenFromFlags(flags);
  } catch (e) {
    usageError(cmd, e);
  }
  const entry = sidecarEntry();
  if (!entry) {
    ctx.io.stderr.write(
      'error: cannot find the sidecar (@novamesh/sidecar, apps/sidecar/dist/main.js)\nhint: build it with `npm run build`\n',
    );
    throw new CommandExit(ExitCode.invalid);
  }
  if (flags.createToken) {
    const created = await withMesh(ctx, cmd, (mesh) =>
      ctx.spin(
        'asking the certificate authority for a join token',
        mesh.createJoinToken(flags.service, {
          ...(flags.namespace ? { namespace: flags.namespace } : {}),
          ttl: '15m',
          uses: 1,
          signal: ctx.signal,
        }),
      ),
    );
    token = created.token;
  }
  // The sidecar reads only its environment. A token travels there, never in argv (visible in `ps`).
  const env = { ...process.env, ...sidecarEnv(flags, { natsUrl: servers.join(','), appPort, ...(token ? { token } : {}) }) };
  return { entry, nodeArgs: SIDECAR_NODE_FLAGS, env, stopLimitMs: sidecarStopLimitMs(env) };
}

/**
 * `meshctl sidecar --service S --app-port N [flags]`: runs the sidecar of one workload in the
 * foreground, configured from flags (SIDECAR_* variables); output goes straight to this terminal,
 * SIGINT/SIGTERM are passed on (it deregisters and drains), and its exit code is meshctl's.
 */
export function sidecarCommand(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('sidecar')
    .usage('--service <name> --app-port <port> [options]')
    .description('run the sidecar proxy of one workload in the foreground (inbound, outbound and admin listeners)');
  addSidecarOptions(cmd, 'required')
    .addHelpText(
      'after',
      `
The workload already listens on 127.0.0.1:<app-port>; the sidecar registers it with discovery (at
--address:<inbound port>), gets a certificate with the join token, follows its snapshot from
proxy-config, and lets the app call other services as http://<service>.mesh/ through
127.0.0.1:<outbound port> (as an HTTP proxy, or by Host header). Ctrl-C deregisters and drains.

Examples:
  meshctl sidecar --service orders --app-port 8080 --create-token
  meshctl sidecar --service web --app-port 3000 --upstreams orders --upstream-port orders=9001 \\
      --token-file /run/secrets/join-token --labels version=v2 --zone eu-west-1a
  curl -s localhost:15000/clusters    the admin port: /ready /config_dump /clusters /metrics`,
    )
    .action(async (flags: SidecarFlags, command: Command) => {
      const launch = await prepareSidecar(ctx, command, flags, flags.appPort as number);
      const sidecar = startChild(
        'sidecar',
        process.execPath,
        [...launch.nodeArgs, launch.entry],
        { env: launch.env, stdio: 'inherit', ...OWN_GROUP },
        ctx.io.stderr,
        // Should meshctl be killed (SIGKILL), the guard stops the sidecar in its place.
        { guard: startGuard(), graceMs: launch.stopLimitMs },
      );
      // The sidecar has its own process group: the terminal's Ctrl-C reaches meshctl, which passes
      // it on, as it does SIGTERM (and a closed terminal's SIGHUP, as SIGTERM).
      const release = takeOverSignals((signal) => {
        sidecar.signal(signal);
      });
      const code = await sidecar.exited;
      release();
      if (code !== 0) throw new CommandExit(code);
    });
}
