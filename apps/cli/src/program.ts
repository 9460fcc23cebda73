import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { caCommand, certCommand, tokenCommand } from './commands/ca';
import { checkCommand } from './commands/check';
import { deregisterCommand } from './commands/deregister';
import { getCommand } from './commands/get';
import { analyzeCommand } from './commands/policy-analyze';
import { applyCommand } from './commands/policy-apply';
import { deleteCommand } from './commands/policy-delete';
import { describeCommand } from './commands/policy-describe';
import { diffCommand } from './commands/policy-diff';
import { getPoliciesCommand } from './commands/policy-get';
import { historyCommand, rollbackCommand } from './commands/policy-history';
import { proxyStatusCommand } from './commands/proxy-status';
import { registerCommand } from './commands/register';
import { runCommand } from './commands/run';
import { sidecarCommand } from './commands/sidecar';
import { watchCommand } from './commands/watch';
import type { CliContext } from './context';
import { positiveDurationArg } from './options';

function version(): string {
  try {
    return (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/**
 * The `meshctl` command tree. Commander never exits the process itself (`exitOverride`): its
 * errors are thrown as CommanderError and main.ts turns them into exit code 2.
 */
export function createProgram(ctx: CliContext): Command {
  const program = new Command('meshctl')
    .description('Register, inspect and watch the services of a Novamesh mesh, and manage its policies.')
    .version(version(), '-V, --version')
    .addOption(new Option('--nats <urls>', 'NATS server URL(s), comma-separated (env NATS_URL)').default(ctx.config.natsUrl))
    .addOption(
      new Option('--timeout <duration>', 'how long to wait for NATS, discovery and the policy service, e.g. 500ms, 5s')
        .argParser(positiveDurationArg)
        .default(5_000, '5s'),
    )
    .exitOverride()
    .configureOutput({ writeOut: (s) => ctx.io.stdout.write(s), writeErr: (s) => ctx.io.stderr.write(s) })
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  meshctl register -f service.yaml          register (or replace) a service; waits until discovery applied it
  cat service.json | meshctl register -f -
  meshctl get services -l zone=eu-west-1a
  meshctl get endpoints payment -l version=v2 -o json
  meshctl watch endpoints payment -o json   one JSON object per change, until Ctrl-C
  meshctl deregister payment --drain 30s

Policies (TrafficPolicy, RouteRule, RateLimitPolicy, AuthorizationPolicy, MutualTLSPolicy;
short kinds tp, rr, rl, authz, mtls):
  meshctl apply -f policies.yaml            create or update every document of the file, in order
  meshctl apply -f policies.yaml --dry-run  validate and show the diff; store nothing
  meshctl diff -f policies.yaml             exit 0 no changes, 1 changes, 2 invalid file
  meshctl get policies --service payment
  meshctl describe policy tp/payment-traffic
  meshctl history policy tp/payment-traffic
  meshctl rollback policy tp/payment-traffic --to 12
  meshctl delete -f policies.yaml           or: meshctl delete trafficpolicy payment-traffic
  meshctl analyze                           exit 1 when there is an error-level finding

Certificates (the certificate authority answers these):
  meshctl token create --service payment --ttl 1h --uses 1
  meshctl cert list
  meshctl cert revoke 4f1c…
  meshctl ca rotate begin                   new root; both roots trusted; workloads re-issue under it
  meshctl ca rotate status                  live certificates per root
  meshctl ca rotate finish                  drop the old root; exit 1 while a certificate still uses it
  meshctl check                             NATS, discovery, policy, CA and certificate expiry; exit 1 on a failure

Sidecars:
  meshctl proxy-status --service payment    snapshot version of each sidecar, in sync or not (always exit 0)
  meshctl sidecar --service orders --app-port 8080 --create-token   run a workload's sidecar in the foreground
  meshctl run --service orders --create-token -- node server.js     start an app with its sidecar (PORT, HTTP_PROXY set)

Exit codes: 0 ok, 1 invalid or refused input (also a revision conflict), 2 usage error,
3 NATS, discovery or the policy service unreachable, 4 not found.
(diff and analyze use 1 for "differences" / "errors found"; see their --help.)`,
    );
  // Subcommands are created with .command() so they inherit exitOverride and output settings.
  registerCommand(program, ctx);
  deregisterCommand(program, ctx);
  const get = getCommand(program, ctx);
  getPoliciesCommand(get, ctx);
  watchCommand(program, ctx);
  applyCommand(program, ctx);
  diffCommand(program, ctx);
  deleteCommand(program, ctx);
  describeCommand(program, ctx);
  historyCommand(program, ctx);
  rollbackCommand(program, ctx);
  analyzeCommand(program, ctx);
  tokenCommand(program, ctx);
  certCommand(program, ctx);
  caCommand(program, ctx);
  checkCommand(program, ctx);
  proxyStatusCommand(program, ctx);
  sidecarCommand(program, ctx);
  runCommand(program, ctx);
  return program;
}
