import { ErrorCode } from '@novamesh/contracts';
import type { Command } from 'commander';
import { type CliContext, withMesh } from '../context';
import { CommandExit, describeError, ExitCode, toMeshError } from '../errors';
import { documentRef, KIND_HELP, loadPolicyDocuments, type PolicyRef, policyRefOf, refText } from './policy-common';

interface DeleteOptions {
  file?: string;
  ignoreNotFound?: boolean;
}

/**
 * `meshctl delete -f FILE` / `meshctl delete KIND NAME…` / `meshctl delete KIND/NAME…`: deletes
 * policies one by one. A policy that does not exist is reported and the others are still
 * deleted; the exit code is then 4 (0 with --ignore-not-found).
 */
export function deleteCommand(program: Command, ctx: CliContext): void {
  program
    .command('delete')
    .description('delete policies named in a file, or by kind and name')
    .argument('[kind]', `policy kind: ${KIND_HELP}; or KIND/NAME`)
    .argument('[names...]', 'policy names')
    .option('-f, --file <path>', 'delete the policies this file defines (- to read stdin)')
    .option('--ignore-not-found', 'a policy that does not exist is not an error')
    .addHelpText(
      'after',
      `
Examples:
  meshctl delete -f payment-policies.yaml
  meshctl delete trafficpolicy payment-traffic
  meshctl delete tp/payment-traffic rr/payment-canary`,
    )
    .action(async (kind: string | undefined, names: string[], opts: DeleteOptions, cmd: Command) => {
      let refs: PolicyRef[];
      if (opts.file !== undefined) {
        if (kind !== undefined) cmd.error('error: give either -f FILE or KIND NAME, not both', { exitCode: ExitCode.usage });
        refs = (await loadPolicyDocuments(opts.file, ctx.io.stdin)).map(documentRef);
      } else if (kind === undefined) {
        return cmd.error('error: say what to delete: -f FILE, KIND NAME or KIND/NAME', { exitCode: ExitCode.usage });
      } else if (kind.includes('/')) {
        // `delete tp/a rr/b`: every argument is KIND/NAME.
        refs = [kind, ...names].map((ref) =>
          ref.includes('/')
            ? policyRefOf(cmd, ref)
            : cmd.error(`error: "${ref}" is not KIND/NAME: name every policy as KIND/NAME, or use KIND NAME…`, {
                exitCode: ExitCode.usage,
              }),
        );
      } else if (names.length === 0) {
        return cmd.error(`error: no policy name: use ${kind} NAME or ${kind}/NAME`, { exitCode: ExitCode.usage });
      } else refs = names.map((name) => policyRefOf(cmd, kind, name));

      let missing = 0;
      await withMesh(ctx, cmd, async (mesh) => {
        for (const ref of refs) {
          try {
            const { deletedRevision } = await ctx.spin(
              `deleting ${refText(ref)}`,
              mesh.deletePolicy(ref.kind, ref.name, { signal: ctx.signal }),
            );
            ctx.io.stdout.write(`${refText(ref)} deleted (last revision ${deletedRevision})\n`);
          } catch (e) {
            const err = toMeshError(e);
            if (err.code !== ErrorCode.notFound) throw err;
            if (!opts.ignoreNotFound) {
              missing++;
              ctx.io.stderr.write(describeError(err));
            }
          }
        }
      });
      if (missing) throw new CommandExit(ExitCode.notFound);
    });
}
