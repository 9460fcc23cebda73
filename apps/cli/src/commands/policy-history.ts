import type { Policy } from '@novamesh/contracts';
import { type Command, InvalidArgumentError } from 'commander';
import { type CliContext, withMesh } from '../context';
import { formatIssue } from '../errors';
import { outputOption } from '../options';
import { type OutputFormat, renderTable, renderValue } from '../output';
import { changedFields, KIND_HELP, policyRefOf, refText, stableJson, timestamp } from './policy-common';

export interface HistoryEntry {
  revision: number;
  operation: string;
  updatedAt: string;
  policy?: Policy;
}

/** The policy service keeps this many revisions per policy. */
const KEPT_REVISIONS = 20;

const OPERATIONS: Record<string, string> = { PUT: 'applied', DEL: 'deleted', PURGE: 'purged' };

/** `meshctl history policy KIND/NAME`: the kept revisions of one policy, oldest first. */
export function historyCommand(program: Command, ctx: CliContext): void {
  const history = program.command('history').description('show the revisions kept of a policy');
  history
    .command('policy')
    .aliases(['policies', 'pol'])
    .description(`revisions of one policy (REVISION OPERATION UPDATED SUMMARY), oldest first; the last ${KEPT_REVISIONS} are kept`)
    .argument('<kind/name>', `KIND/NAME or KIND NAME; kinds: ${KIND_HELP}`)
    .argument('[name]', 'policy name, when KIND is given alone')
    .addOption(outputOption())
    .action(async (first: string, second: string | undefined, opts: { output: OutputFormat }, cmd: Command) => {
      const ref = policyRefOf(cmd, first, second);
      const entries = await withMesh(ctx, cmd, (mesh) =>
        ctx.spin(`reading the history of ${refText(ref)}`, mesh.policyHistory(ref.kind, ref.name, { signal: ctx.signal })),
      );
      if (opts.output !== 'table') ctx.io.stdout.write(renderValue(entries, opts.output));
      else ctx.io.stdout.write(historyTable(entries));
    });
}

/** `meshctl rollback policy KIND/NAME --to REVISION`: applies a kept revision again, as a new revision. */
export function rollbackCommand(program: Command, ctx: CliContext): void {
  const rollback = program.command('rollback').description('restore an earlier revision of a policy');
  rollback
    .command('policy')
    .aliases(['pol'])
    .description('apply a kept revision of a policy again (validated again; it becomes a new revision)')
    .argument('<kind/name>', `KIND/NAME or KIND NAME; kinds: ${KIND_HELP}`)
    .argument('[name]', 'policy name, when KIND is given alone')
    .requiredOption('--to <revision>', 'the revision to restore (see `meshctl history policy`)', revisionArg)
    .addHelpText('after', '\nExample:\n  meshctl history policy tp/payment-traffic\n  meshctl rollback policy tp/payment-traffic --to 12')
    .action(async (first: string, second: string | undefined, opts: { to: number }, cmd: Command) => {
      const ref = policyRefOf(cmd, first, second);
      const r = await withMesh(ctx, cmd, (mesh) =>
        ctx.spin(
          `rolling ${refText(ref)} back to revision ${opts.to}`,
          mesh.rollbackPolicy(ref.kind, ref.name, opts.to, { signal: ctx.signal }),
        ),
      );
      ctx.io.stdout.write(
        r.unchanged
          ? `${refText(ref)} already matches revision ${opts.to} (still revision ${r.revision})\n`
          : `${refText(ref)} rolled back to revision ${opts.to} (now revision ${r.revision})\n`,
      );
      for (const w of r.warnings) ctx.io.stderr.write(`warning: ${formatIssue(w)}\n`);
    });
}

function revisionArg(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError(`"${value}" is not a revision number`);
  return n;
}

export function historyTable(entries: readonly HistoryEntry[]): string {
  return renderTable(
    ['REVISION', 'OPERATION', 'UPDATED', 'SUMMARY'],
    historySummaries(entries).map((summary, i) => {
      const e = entries[i] as HistoryEntry;
      return [String(e.revision), OPERATIONS[e.operation] ?? e.operation, timestamp(e.updatedAt), summary];
    }),
  );
}

/**
 * One line per revision saying what it did compared with the revision before it: `created`,
 * `changed loadBalancing, timeout`, `deleted`, and `same as revision 7` for a rollback.
 */
export function historySummaries(entries: readonly HistoryEntry[]): string[] {
  // With fewer entries than the service keeps, nothing was trimmed: the first one created the policy.
  const complete = entries.length < KEPT_REVISIONS;
  return entries.map((e, i) => {
    if (e.operation === 'DEL') return 'deleted';
    if (e.operation === 'PURGE') return 'purged';
    if (!e.policy) return '-';
    const previous = entries[i - 1];
    if (!previous) return complete ? 'created' : 'oldest revision kept';
    if (!previous.policy) return 'created again';
    const changed = changedFields(previous.policy as unknown as Record<string, unknown>, e.policy as unknown as Record<string, unknown>);
    const same = entries
      .slice(0, i - 1)
      .reverse()
      .find((earlier) => earlier.policy && stableJson(earlier.policy) === stableJson(e.policy));
    const what = changed.length ? `changed ${changed.join(', ')}` : 'no change';
    return same ? `${what} (same as revision ${same.revision})` : what;
  });
}
