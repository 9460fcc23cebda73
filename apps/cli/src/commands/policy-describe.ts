import type { EffectivePolicyV1, StoredPolicy } from '@novamesh/contracts';
import type { MeshManager } from '@novamesh/sdk';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { type CliContext, withMesh } from '../context';
import { outputOption } from '../options';
import { type OutputFormat, renderValue } from '../output';
import { indent, KIND_HELP, policyRefOf, policyServices, refText, timestamp } from './policy-common';

/** How long `describe` waits for a service's effective policy before saying there is none yet. */
const EFFECTIVE_WAIT_MS = 2_000;

export interface PolicyDescription {
  stored: StoredPolicy;
  /** Effective policy per service the policy names (none for mesh-wide policies). */
  effective: Record<string, EffectivePolicyV1 | null>;
}

/** `meshctl describe policy KIND/NAME`: the stored policy and the effective policy of its service. */
export function describeCommand(program: Command, ctx: CliContext): void {
  const describe = program.command('describe').description('show one policy in detail');
  describe
    .command('policy')
    .aliases(['policies', 'pol'])
    .description('the stored policy (YAML, revision, update time) and the effective policy of the service it applies to')
    .argument('<kind/name>', `KIND/NAME or KIND NAME; kinds: ${KIND_HELP}`)
    .argument('[name]', 'policy name, when KIND is given alone')
    .addOption(outputOption())
    .action(async (first: string, second: string | undefined, opts: { output: OutputFormat }, cmd: Command) => {
      const ref = policyRefOf(cmd, first, second);
      const description = await withMesh(ctx, cmd, async (mesh): Promise<PolicyDescription> => {
        const stored = await ctx.spin(`reading ${refText(ref)}`, mesh.getPolicy(ref.kind, ref.name, { signal: ctx.signal }));
        const effective: PolicyDescription['effective'] = {};
        for (const service of policyServices(stored.policy).filter((s) => s !== '*'))
          effective[service] = await ctx.spin(`reading the effective policy of ${service}`, firstEffective(mesh, service, ctx.signal));
        return { stored, effective };
      });
      if (opts.output !== 'table') ctx.io.stdout.write(renderValue(description, opts.output));
      else ctx.io.stdout.write(describeText(description));
    });
}

/** The current effective policy of a service, or null when none arrives within EFFECTIVE_WAIT_MS. */
async function firstEffective(mesh: MeshManager, service: string, signal: AbortSignal): Promise<EffectivePolicyV1 | null> {
  const stop = AbortSignal.any([signal, AbortSignal.timeout(EFFECTIVE_WAIT_MS)]);
  const it = mesh.watchEffectivePolicy(service, { signal: stop });
  try {
    const first = await it.next();
    return first.done ? null : first.value;
  } catch (e) {
    // Ctrl-C ends the command; anything else only costs the effective part of the description.
    if (signal.aborted) throw e;
    return null;
  } finally {
    await it.return(undefined).catch(() => undefined);
  }
}

export function describeText({ stored, effective }: PolicyDescription): string {
  const p = stored.policy;
  const services = policyServices(p);
  let text = renderRows([
    ['Kind', p.kind],
    ['Name', p.name],
    ['Service', services.map((s) => (s === '*' ? '* (every service)' : s)).join(', ') || '-'],
    ['Revision', String(stored.revision)],
    ['Updated', timestamp(stored.updatedAt)],
  ]);
  text += `Policy:\n${indent(stringify(p, { lineWidth: 0 }))}`;
  if (services.includes('*'))
    text += 'Effective policy: mesh-wide, part of the effective policy of every service (describe a policy of a service to see one)\n';
  for (const [service, e] of Object.entries(effective)) {
    if (!e) text += `Effective policy of ${service}: none published yet (is the service registered and the policy service running?)\n`;
    else
      text += `Effective policy of ${service} (revision ${e.revision}, updated ${timestamp(e.updatedAt)}):\n${indent(effectiveSummary(e))}`;
  }
  return text;
}

/** A few lines saying what a service's sidecars do and which policies decide it. */
export function effectiveSummary(e: EffectivePolicyV1): string {
  const list = (items: string[]) => (items.length ? items.join(', ') : 'none');
  const lb = e.traffic?.loadBalancing?.algorithm;
  return renderRows([
    ['Sources', e.sources.length ? e.sources.map((s) => `${refText(s)} (revision ${s.revision})`).join(', ') : 'none: defaults only'],
    ['Traffic', e.traffic ? `${e.traffic.name}${lb ? ` (load balancing ${lb})` : ''}` : 'none'],
    ['Routes', list(e.routes.map((r) => `${r.name} (${plural(r.routes.length, 'route')})`))],
    ['Rate limits', list(e.rateLimits.map((r) => r.name))],
    ['Authorization', `default ${e.authorization.defaultAction}; policies: ${list(e.authorization.policies.map((a) => a.name))}`],
    ['mTLS', `${e.mtls.mode} (${e.mtls.source ? `from ${e.mtls.source}` : 'default'})`],
  ]);
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

/** `Label:   value` lines, the values aligned. */
function renderRows(rows: readonly [string, string][]): string {
  const width = Math.max(...rows.map(([k]) => k.length)) + 1;
  return rows.map(([k, v]) => `${`${k}:`.padEnd(width)}  ${v}\n`).join('');
}
