import { type Command, CommanderError } from 'commander';
import { type CliContext, withMesh } from '../context';
import { CommandExit, describeError, ExitCode, exitCodeFor, toMeshError } from '../errors';
import { atDocument, describeDocumentError, documentLabel, loadPolicyDocuments, REFUSALS, refText } from './policy-common';

/** `meshctl diff`'s exit codes, like `kubectl diff` (and `diff(1)`): 1 means "differs", not "failed". */
export const DiffExit = {
  same: 0,
  differs: 1,
  /** The file does not parse, or the policy service refused a document. */
  invalid: 2,
} as const;

/**
 * `meshctl diff -f FILE`: for each document, what applying it would change in the stored policy
 * (a dry-run apply). Nothing is stored.
 */
export function diffCommand(program: Command, ctx: CliContext): void {
  program
    .command('diff')
    .description('show what `apply -f FILE` would change, storing nothing')
    .requiredOption('-f, --file <path>', 'policy file, or - to read stdin')
    .addHelpText(
      'after',
      `
Exit codes (like kubectl diff): 0 nothing would change, 1 something would change,
2 the file is invalid (or a usage error), 3 NATS or the policy service unreachable.`,
    )
    .action(async (opts: { file: string }, cmd: Command) => {
      let differs = false;
      let invalid = false;
      try {
        const docs = await loadPolicyDocuments(opts.file, ctx.io.stdin);
        await withMesh(ctx, cmd, async (mesh) => {
          for (const doc of docs) {
            try {
              const r = await ctx.spin(
                `comparing ${documentLabel(doc)}`,
                mesh.applyPolicy(doc.value, { dryRun: true, signal: ctx.signal }),
              );
              if (r.unchanged || !r.diff) continue;
              differs = true;
              const ref = refText(r);
              ctx.io.stdout.write(`--- ${ref} (${r.created ? 'not stored' : 'stored'})\n+++ ${ref} (document ${doc.number})\n`);
              ctx.io.stdout.write(r.diff.endsWith('\n') ? r.diff : `${r.diff}\n`);
            } catch (e) {
              const err = toMeshError(e);
              if (!REFUSALS.has(err.code)) throw atDocument(doc, err);
              // Keep going: every refused document is worth knowing about, and nothing is stored.
              invalid = true;
              ctx.io.stderr.write(describeDocumentError(doc, err));
            }
          }
        });
      } catch (e) {
        // An unreadable or unparsable file is "invalid" here too, not "differs" (exit 1).
        if (e instanceof CommandExit || e instanceof CommanderError || exitCodeFor(e) !== ExitCode.invalid) throw e;
        ctx.io.stderr.write(describeError(e, { debug: ctx.config.debug }));
        throw new CommandExit(DiffExit.invalid);
      }
      if (invalid) throw new CommandExit(DiffExit.invalid);
      if (differs) throw new CommandExit(DiffExit.differs);
    });
}
