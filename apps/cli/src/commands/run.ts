import { type Command, Option } from 'commander';
import type { CliContext } from '../context';
import { CommandExit, ExitCode } from '../errors';
import { positiveDurationArg } from '../options';
import { startGuard } from './guard';
import { prepareSidecar } from './sidecar';
import { addSidecarOptions, type SidecarFlags } from './sidecar-flags';
import { type Child, freePort, OWN_GROUP, prefixOutput, STOP_GRACE_MS, startChild, takeOverSignals, waitForPort } from './supervise';

interface RunFlags extends SidecarFlags {
  appTimeout: number;
}

/**
 * The app's environment: this process's without the sidecar's variables (the join token is the
 * sidecar's secret), plus where to listen and how to reach the mesh. Node's `http` ignores
 * HTTP_PROXY, so MESH_OUTBOUND names the outbound listener for code that sets the Host itself.
 */
export function appEnv(parent: NodeJS.ProcessEnv, appPort: number, outboundPort: number, service: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(parent).filter(([k]) => !k.startsWith('SIDECAR_')));
  const outbound = `http://127.0.0.1:${outboundPort}`;
  return {
    ...env,
    PORT: String(appPort),
    HTTP_PROXY: outbound,
    http_proxy: outbound,
    NO_PROXY: 'localhost,127.0.0.1',
    no_proxy: 'localhost,127.0.0.1',
    MESH_OUTBOUND: outbound,
    MESH_SERVICE: service,
  };
}

/** A port not in `taken` (free ports are picked one after another and could repeat). */
async function freePortBesides(taken: (number | undefined)[]): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (!taken.includes(port)) return port;
  }
}

/**
 * `meshctl run --service S [sidecar flags] -- <command> [args…]`: like `linkerd inject` for a local
 * process. Starts the app with PORT and HTTP_PROXY set, waits until it listens, then starts its
 * sidecar; prefixes their output with [app] / [sidecar]; stops both on SIGINT/SIGTERM or when either
 * ends. Exits with the app's code (the sidecar's, when the sidecar failed first).
 */
export function runCommand(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('run')
    .description('run a local process with a sidecar in front of it: the app gets PORT and HTTP_PROXY, the sidecar joins the mesh')
    .usage('--service <name> [options] -- <command> [args...]')
    .argument('<command...>', 'the app and its arguments, after --');
  addSidecarOptions(cmd, 'optional')
    .addOption(
      new Option('--app-timeout <duration>', 'how long the app may take to listen on its port')
        .argParser(positiveDurationArg)
        .default(30_000, '30s'),
    )
    .addHelpText(
      'after',
      `
The app gets PORT=<app port> (it must listen on 127.0.0.1 or all interfaces), HTTP_PROXY and
http_proxy=http://127.0.0.1:<outbound port>, NO_PROXY=localhost,127.0.0.1, MESH_OUTBOUND (the same
URL) and MESH_SERVICE. It calls other services as http://<service>.mesh/…: through HTTP_PROXY
(curl, Go, Python requests, undici's EnvHttpProxyAgent) or by sending the request to MESH_OUTBOUND
with Host: <service>.mesh. Once the app listens, the sidecar starts, registers the workload and
gets a certificate; meshctl prints its ports. Ctrl-C (or SIGTERM, or closing the terminal) stops
the sidecar (deregister, drain) while the app still answers, and then the app; a second Ctrl-C
kills both. The app and the sidecar run in process groups of their own, so the terminal's Ctrl-C
reaches meshctl alone, which stops them in that order; should meshctl be killed (SIGKILL), a guard
process it started stops them in its place.

Examples:
  meshctl run --service orders --create-token -- node server.js
  meshctl run --service web --upstreams orders --labels version=v2 --create-token -- python3 app.py
  meshctl run --service api --app-port 8080 --token-file token -- ./api --listen :8080   an app with its own port`,
    )
    .action(async (command: string[], flags: RunFlags, c: Command) => {
      const code = await run(ctx, c, command, flags);
      if (code !== 0) throw new CommandExit(code);
    });
}

async function run(ctx: CliContext, cmd: Command, command: string[], flags: RunFlags): Promise<number> {
  const say = (text: string) => ctx.io.stderr.write(`meshctl: ${text}\n`);
  const appPort = flags.appPort ?? (await freePortBesides([flags.inboundPort, flags.outboundPort, flags.adminPort]));
  // The app must know the outbound port before the sidecar starts, so "any free port" is chosen here.
  const outboundPort = flags.outboundPort || (await freePortBesides([appPort, flags.inboundPort, flags.adminPort]));
  // 0: the sidecar picks one and reports it (15000 would clash with a second `meshctl run`).
  const adminPort = flags.adminPort ?? 0;
  const launch = await prepareSidecar(ctx, cmd, { ...flags, outboundPort, adminPort }, appPort);

  const [program, ...args] = command as [string, ...string[]];
  // Should meshctl be killed (SIGKILL), the guard stops the sidecar and then the app in its place.
  const guard = startGuard();
  const app = startChild(
    'the app',
    program,
    args,
    { env: appEnv(process.env, appPort, outboundPort, flags.service), stdio: ['inherit', 'pipe', 'pipe'], ...OWN_GROUP },
    ctx.io.stderr,
    { guard, graceMs: STOP_GRACE_MS },
  );
  prefixOutput(app.process, '[app] ', ctx.io.stdout, ctx.io.stderr);
  let sidecar: Child | undefined;

  const stop = new AbortController();
  const stopped = new Promise<NodeJS.Signals>((resolve) => stop.signal.addEventListener('abort', () => resolve(stop.signal.reason)));
  const release = takeOverSignals((signal) => {
    if (!stop.signal.aborted) return stop.abort(signal);
    // Only a second Ctrl-C means "now": a repeated SIGTERM (or SIGHUP) lets the orderly stop go on.
    if (signal !== 'SIGINT') return;
    say('killing the app and the sidecar');
    for (const child of [sidecar, app]) child?.signal('SIGKILL');
  });
  try {
    say(`started ${command.join(' ')} with PORT=${appPort}; waiting for it to listen`);
    const waited = await ctx.spin(
      `waiting for the app to listen on 127.0.0.1:${appPort}`,
      waitForPort(appPort, '127.0.0.1', { timeoutMs: flags.appTimeout, until: app.exited, signal: stop.signal }),
    );
    if (waited === 'aborted') return await app.stop(stop.signal.reason);
    if (waited === 'exited') {
      const code = await app.exited;
      say(`the app exited (code ${code}) before it listened on 127.0.0.1:${appPort}`);
      return code;
    }
    if (waited === 'timeout') {
      say(
        `the app did not listen on 127.0.0.1:${appPort} within ${Math.round(flags.appTimeout / 1000)}s (it has PORT=${appPort}); stopping it`,
      );
      await app.stop('SIGTERM', 5_000);
      return ExitCode.invalid;
    }

    const sc = startChild(
      'the sidecar',
      process.execPath,
      [...launch.nodeArgs, launch.entry],
      { env: launch.env, stdio: ['ignore', 'pipe', 'pipe'], ...OWN_GROUP },
      ctx.io.stderr,
      { guard, graceMs: launch.stopLimitMs },
    );
    sidecar = sc;
    prefixOutput(sc.process, '[sidecar] ', ctx.io.stdout, ctx.io.stderr, (line) => {
      if (line.includes('"msg":"sidecar ready"')) say(readySummary(flags.service, appPort, line));
    });

    const first = await Promise.race([
      app.exited.then((code) => ({ who: 'app' as const, code })),
      sc.exited.then((code) => ({ who: 'sidecar' as const, code })),
      stopped.then((signal) => ({ who: 'signal' as const, signal })),
    ]);
    if (first.who === 'app') {
      say(`the app exited (code ${first.code}); stopping the sidecar`);
      await sc.stop('SIGTERM', launch.stopLimitMs);
      return first.code;
    }
    if (first.who === 'sidecar') {
      say(`the sidecar exited (code ${first.code}); stopping the app`);
      const code = await app.stop('SIGTERM');
      return first.code || code;
    }
    // The sidecar first: it deregisters and finishes in-flight requests, which still need the app.
    await sc.stop(first.signal, launch.stopLimitMs);
    return await app.stop(first.signal);
  } finally {
    release();
  }
}

/** One line once the sidecar is ready: where everything listens (from its `sidecar ready` log line). */
export function readySummary(service: string, appPort: number, line: string): string {
  let ports: Record<string, number> = {};
  try {
    ports = (JSON.parse(line) as { ports?: Record<string, number> }).ports ?? {};
  } catch {
    // Not JSON (a future log format): say less.
  }
  const parts = [`app 127.0.0.1:${appPort}`];
  if (ports.outbound) parts.push(`outbound http://127.0.0.1:${ports.outbound} (the app's HTTP_PROXY)`);
  if (ports.inbound) parts.push(`inbound :${ports.inbound}`);
  if (ports.admin) parts.push(`admin http://127.0.0.1:${ports.admin}`);
  for (const [name, port] of Object.entries(ports))
    if (name.startsWith('upstream:')) parts.push(`${name.slice('upstream:'.length)} on 127.0.0.1:${port}`);
  return `${service} is in the mesh: ${parts.join(', ')}`;
}
