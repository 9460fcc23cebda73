#!/usr/bin/env node
import { CommanderError } from 'commander';
import { type CliConfig, createContext } from './context';
import { CommandExit, describeError, ExitCode, exitCodeFor } from './errors';
import { createProgram } from './program';

/** The one place meshctl reads its environment. */
function loadConfig(env: NodeJS.ProcessEnv): Readonly<CliConfig> {
  return Object.freeze({
    natsUrl: env.NATS_URL?.trim() || 'nats://127.0.0.1:4222',
    spinner: process.stderr.isTTY === true && env.TERM !== 'dumb',
    // https://no-color.org: any non-empty NO_COLOR turns colors off.
    color: process.stdout.isTTY === true && env.TERM !== 'dumb' && !env.NO_COLOR,
    debug: env.MESHCTL_DEBUG === '1' || env.MESHCTL_DEBUG === 'true',
  });
}

/** The whole life of one meshctl run: config → signals → command → exit code. */
async function main(argv: string[]): Promise<number> {
  const config = loadConfig(process.env);

  // First Ctrl-C asks the command to stop (watch ends cleanly); a second one, or a command
  // stuck in a call that cannot be aborted, exits right away.
  const abort = new AbortController();
  const interrupt = () => {
    if (abort.signal.aborted) process.exit(ExitCode.interrupted);
    abort.abort();
    setTimeout(() => process.exit(ExitCode.interrupted), 2_000).unref();
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  // `meshctl watch … | head -1`: the reader left, which is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(ExitCode.ok);
    throw e;
  });

  const ctx = createContext(config, { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin }, abort.signal);
  try {
    await createProgram(ctx).parseAsync(argv);
    return ExitCode.ok;
  } catch (e) {
    // Commander already printed its message (and help hint); --help and --version exit 0.
    if (e instanceof CommanderError) return e.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    // The command already said why (diff found differences, analyze found errors, …).
    if (e instanceof CommandExit) return e.exitCode;
    process.stderr.write(describeError(e, { debug: config.debug }));
    return exitCodeFor(e);
  }
}

void main(process.argv).then((code) => {
  process.exitCode = code;
  // Connections are closed by now; a stray handle must not keep a finished command alive.
  setTimeout(() => process.exit(code), 1_000).unref();
});
