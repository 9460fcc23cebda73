import { parsePolicyKey } from '@novamesh/policy';
import type { Command } from 'commander';
import { type CliContext, withMesh } from '../context';
import { CommandExit, ExitCode } from '../errors';
import { outputOption } from '../options';
import { type OutputFormat, renderTable, renderValue } from '../output';
import { refText } from './policy-common';

export interface Finding {
  level: string;
  code: string;
  message: string;
  policy?: string;
  path?: string;
}

const LEVEL_ORDER = ['error', 'warning', 'info'];
const rank = (level: string) => {
  const i = LEVEL_ORDER.indexOf(level);
  return i < 0 ? LEVEL_ORDER.length : i;
};

/** `meshctl analyze`: what the policy service finds wrong across all stored policies; exit 1 on any error. */
export function analyzeCommand(program: Command, ctx: CliContext): void {
  program
    .command('analyze')
    .description('check all stored policies together (conflicts, unknown services, subsets) and list the findings')
    .addOption(outputOption())
    .addHelpText(
      'after',
      `
Levels: error (the policy does not work as written), warning (probably not what you meant), info.
Exit codes: 0 no error-level finding (warnings and infos allowed), 1 at least one error-level
finding, 3 NATS or the policy service unreachable.`,
    )
    .action(async (opts: { output: OutputFormat }, cmd: Command) => {
      const findings = await withMesh(ctx, cmd, (mesh) => ctx.spin('analyzing policies', mesh.analyzePolicies({ signal: ctx.signal })));
      const sorted = [...findings].sort((a, b) => rank(a.level) - rank(b.level));
      if (opts.output !== 'table') ctx.io.stdout.write(renderValue(sorted, opts.output));
      else if (sorted.length === 0) ctx.io.stderr.write('No problems found.\n');
      else ctx.io.stdout.write(findingsTable(sorted));
      if (findings.some((f) => f.level === 'error')) throw new CommandExit(ExitCode.invalid);
    });
}

export function findingsTable(findings: readonly Finding[]): string {
  return renderTable(
    ['LEVEL', 'CODE', 'POLICY', 'MESSAGE'],
    findings.map((f) => [f.level, f.code, policyColumn(f.policy), f.path ? `${f.path}: ${f.message}` : f.message]),
  );
}

/** The finding's policy (a KV key, `TrafficPolicy.payment-traffic`) as meshctl names it: `trafficpolicy/payment-traffic`. */
function policyColumn(key: string | undefined): string {
  if (!key) return '-';
  const ref = parsePolicyKey(key);
  return ref ? refText(ref) : key;
}
