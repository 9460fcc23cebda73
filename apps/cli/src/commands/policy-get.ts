import type { PolicyKind, StoredPolicy } from '@novamesh/contracts';
import { type Command, Option } from 'commander';
import { type CliContext, withMesh } from '../context';
import { outputOption } from '../options';
import { type OutputFormat, renderTable, renderValue } from '../output';
import { age, KIND_HELP, kindArg, policyServices } from './policy-common';
import { serviceNameArg } from './sidecar-flags';

interface GetPoliciesOptions {
  kind?: PolicyKind;
  service?: string;
  output: OutputFormat;
}

/** `meshctl get policies [--kind KIND] [--service NAME]`: the stored policies, one row each. */
export function getPoliciesCommand(get: Command, ctx: CliContext): void {
  get
    .command('policies')
    .aliases(['policy', 'pol'])
    .description('list stored policies (NAME KIND SERVICE REVISION UPDATED)')
    .addOption(new Option('--kind <kind>', `only policies of this kind: ${KIND_HELP}`).argParser(kindArg))
    .addOption(
      new Option('--service <name>', 'only policies that name this service ("*" for mesh-wide ones)').argParser((v) =>
        v === '*' ? v : serviceNameArg(v),
      ),
    )
    .addOption(outputOption())
    .action(async (opts: GetPoliciesOptions, cmd: Command) => {
      const policies = await withMesh(ctx, cmd, (mesh) =>
        ctx.spin(
          'asking the policy service',
          mesh.listPolicies(
            { ...(opts.kind ? { kind: opts.kind } : {}), ...(opts.service ? { serviceName: opts.service } : {}) },
            { signal: ctx.signal },
          ),
        ),
      );
      if (opts.output !== 'table') ctx.io.stdout.write(renderValue(policies, opts.output));
      else if (policies.length === 0) ctx.io.stderr.write(opts.kind || opts.service ? 'No policies match.\n' : 'No policies stored.\n');
      else ctx.io.stdout.write(policiesTable(policies));
    });
}

export function policiesTable(policies: readonly StoredPolicy[], now = Date.now()): string {
  return renderTable(
    ['NAME', 'KIND', 'SERVICE', 'REVISION', 'UPDATED'],
    policies.map((s) => [
      s.policy.name,
      s.policy.kind,
      policyServices(s.policy).join(',') || '-',
      String(s.revision),
      age(s.updatedAt, now),
    ]),
  );
}
