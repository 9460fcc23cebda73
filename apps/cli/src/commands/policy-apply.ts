import type { PolicyApplyResultV1 } from '@novamesh/contracts';
import type { MeshManager } from '@novamesh/sdk';
import type { Command } from 'commander';
import { type CliContext, withMesh } from '../context';
import { CommandExit, ExitCode, formatIssue, toMeshError } from '../errors';
import { outputOption } from '../options';
import { type OutputFormat, renderValue } from '../output';
import {
  atDocument,
  describeDocumentError,
  documentLabel,
  documentRange,
  indent,
  loadPolicyDocuments,
  type PolicyDocument,
  REFUSALS,
  refText,
} from './policy-common';

interface ApplyOptions {
  file: string;
  dryRun?: boolean;
  output: OutputFormat;
}

/**
 * `meshctl apply -f FILE [--dry-run]`: sends each document of a policy file to the policy service,
 * in file order, and reports each like kubectl (`trafficpolicy/x created (revision 12)`). The
 * service validates: every document of a file of several is checked first (dry runs), and one it
 * refuses applies none.
 */
export function applyCommand(program: Command, ctx: CliContext): void {
  program
    .command('apply')
    .description('create or update policies from a YAML file (documents separated by ---) or JSON')
    .requiredOption('-f, --file <path>', 'policy file, or - to read stdin')
    .option('--dry-run', 'only validate and show what would change (the diff); store nothing')
    .addOption(outputOption())
    .addHelpText(
      'after',
      `
Each document needs a kind (TrafficPolicy, RouteRule, RateLimitPolicy, AuthorizationPolicy,
MutualTLSPolicy) and a name, once per file. Every document is checked by the policy service first: when it
refuses any, meshctl prints why for each (every problem with its path) and applies none of them
(exit 1). Then they are applied one after the other (should the service refuse one now, which a
change made meanwhile by someone else can cause, those before it stay applied and none after it
is). With --dry-run every document is checked and nothing is stored. A file that does not parse
applies nothing.

Examples:
  meshctl apply -f payment-policies.yaml
  meshctl apply -f payment-policies.yaml --dry-run
  cat policy.json | meshctl apply -f -`,
    )
    .action(async (opts: ApplyOptions, cmd: Command) => {
      const docs = await loadPolicyDocuments(opts.file, ctx.io.stdin);
      const dryRun = opts.dryRun === true;
      const results: PolicyApplyResultV1[] = [];
      let refused = 0;
      const out = ctx.io.stdout;
      try {
        await withMesh(ctx, cmd, async (mesh) => {
          if (docs.length > 1) {
            refused = rivalsInFile(ctx, docs) || (dryRun ? 0 : await refusedDocuments(ctx, mesh, docs));
            if (refused) {
              ctx.io.stderr.write(
                `note: nothing ${dryRun ? 'would be ' : ''}applied: ${refused} of ${docs.length} documents refused (a file is applied whole or not at all)\n`,
              );
              return;
            }
          }
          for (const doc of docs) {
            let result: PolicyApplyResultV1;
            try {
              result = await ctx.spin(`applying ${documentLabel(doc)}`, mesh.applyPolicy(doc.value, { dryRun, signal: ctx.signal }));
            } catch (e) {
              const err = toMeshError(e);
              const last = docs[docs.length - 1]?.number ?? doc.number;
              const skipped = !dryRun && last > doc.number ? documentRange(doc.number + 1, last) : '';
              if (!REFUSALS.has(err.code)) throw atDocument(doc, err, skipped && ` (${skipped} not applied)`);
              refused++;
              ctx.io.stderr.write(describeDocumentError(doc, err));
              if (dryRun) continue;
              if (skipped) ctx.io.stderr.write(`note: ${skipped} not applied: apply stops at the first refused document\n`);
              break;
            }
            results.push(result);
            if (opts.output === 'table') out.write(resultText(result));
            for (const w of result.warnings) ctx.io.stderr.write(`warning: ${formatIssue(w)}\n`);
          }
        });
      } catch (e) {
        // What was applied before a failure is reported in every format.
        if (opts.output !== 'table' && results.length) out.write(renderValue(results, opts.output));
        throw e;
      }
      if (opts.output !== 'table') out.write(renderValue(results, opts.output));
      if (refused) throw new CommandExit(ExitCode.invalid);
    });
}

/**
 * What the per-document checks cannot see, as each is checked alone: one policy twice in the same
 * file (the same kind and name: the second would replace the first at every apply, writing two
 * revisions each time), and two TrafficPolicies for one service (the second would be refused once
 * the first is stored). Prints why and returns how many documents (0: none).
 */
function rivalsInFile(ctx: CliContext, docs: PolicyDocument[]): number {
  const first = new Map<string, PolicyDocument>();
  const named = new Map<string, PolicyDocument>();
  let rivals = 0;
  for (const doc of docs) {
    const { kind, serviceName, name } = doc.value;
    if (typeof kind === 'string' && typeof name === 'string') {
      const id = `${kind.toLowerCase()}/${name}`;
      const same = named.get(id);
      if (same) {
        rivals++;
        ctx.io.stderr.write(`error: ${documentLabel(doc)}: the same policy as ${documentLabel(same)} (one document per kind and name)\n`);
        continue;
      }
      named.set(id, doc);
    }
    if (kind !== 'TrafficPolicy' || typeof serviceName !== 'string') continue;
    const earlier = first.get(serviceName);
    if (!earlier) {
      first.set(serviceName, doc);
      continue;
    }
    rivals++;
    ctx.io.stderr.write(
      `error: ${documentLabel(doc)}: serviceName: ${documentLabel(earlier)} already configures "${serviceName}" (one TrafficPolicy per service)\n`,
    );
  }
  return rivals;
}

/**
 * Checks every document with the policy service first (a dry run each: nothing stored), printing why
 * each refused one is refused; returns how many were. So a file with a bad document applies none.
 */
async function refusedDocuments(ctx: CliContext, mesh: MeshManager, docs: PolicyDocument[]): Promise<number> {
  let refused = 0;
  for (const doc of docs) {
    try {
      await ctx.spin(`checking ${documentLabel(doc)}`, mesh.applyPolicy(doc.value, { dryRun: true, signal: ctx.signal }));
    } catch (e) {
      const err = toMeshError(e);
      if (!REFUSALS.has(err.code)) throw atDocument(doc, err, ' (nothing applied)');
      refused++;
      ctx.io.stderr.write(describeDocumentError(doc, err));
    }
  }
  return refused;
}

/** `trafficpolicy/x created (revision 12)`; with --dry-run, `… configured (dry run)` and the diff. */
export function resultText(r: PolicyApplyResultV1): string {
  const verb = r.unchanged ? 'unchanged' : r.created ? 'created' : 'configured';
  if (r.dryRun) return `${refText(r)} ${verb} (dry run)\n${r.diff ? indent(r.diff) : ''}`;
  return `${refText(r)} ${verb} (revision ${r.revision})\n`;
}
