import type { MutualTLSPolicy, Policy } from '@novamesh/contracts';
import { crossCheckCoded } from './cross-check';
import { policyKey } from './policy-key';
import { policyWarnings, validatePolicy } from './validate';

/** istioctl-analyze-like findings across all stored policies and registered services. */
export interface Finding {
  level: 'error' | 'warning' | 'info';
  /** Stable, e.g. `MultipleTrafficPolicies`, `UnreachableRoute`, `SubsetNoEndpoints`. */
  code: string;
  message: string;
  /** Policy KV key, `<kind>.<name>`. */
  policy?: string;
  path?: string;
}

const LEVELS = { error: 0, warning: 1, info: 2 } as const;
const cmp = (a: string | undefined, b: string | undefined) => (a === b ? 0 : a === undefined ? 1 : b === undefined ? -1 : a < b ? -1 : 1);

/** Reported once per service below rather than once per policy by crossCheck. */
const AGGREGATED = new Set(['ShadowsRoute', 'MultipleTrafficPolicies', 'MultipleMutualTLSPolicies']);

/**
 * istioctl-analyze-like findings across all stored policies and registered services: invalid
 * policies (errors), more than one TrafficPolicy per service (error), policies for unregistered
 * services, subsets selecting no endpoint, unreachable routes and other warnings, and notes
 * such as mTLS overrides of the mesh-wide mode. Sorted by level, policy, path; deterministic.
 */
export function analyze(policies: Policy[], services: { name: string; endpointLabels: Record<string, string>[] }[]): Finding[] {
  const out: Finding[] = [];
  const registered = new Map(services.map((s) => [s.name, s.endpointLabels]));
  const valid: Policy[] = [];
  for (const p of policies) {
    const v = validatePolicy(p);
    if (v.ok) valid.push(v.policy);
    else
      for (const i of v.issues) out.push({ level: 'error', code: 'InvalidPolicy', message: i.message, policy: policyKey(p), path: i.path });
  }
  const ctx = { endpointLabels: (s: string) => registered.get(s), policies: valid };

  for (const p of valid) {
    const key = policyKey(p);
    for (const w of [...policyWarnings(p), ...crossCheckCoded(p, ctx)])
      if (!AGGREGATED.has(w.code)) out.push({ level: 'warning', code: w.code, message: w.message, policy: key, path: w.path });
    if (p.kind === 'RouteRule') {
      const used = new Set(p.routes.flatMap((r) => [...(r.split ?? []).map((s) => s.subset), ...(r.mirror ? [r.mirror.subset] : [])]));
      p.subsets.forEach((s, i) => {
        if (!used.has(s.name))
          out.push({
            level: 'info',
            code: 'UnusedSubset',
            message: `subset "${s.name}" is not used by any route`,
            policy: key,
            path: `subsets[${i}]`,
          });
      });
    }
  }

  const byTarget = new Map<string, Policy[]>();
  for (const p of valid) byTarget.set(p.serviceName, [...(byTarget.get(p.serviceName) ?? []), p]);
  const names = (ps: Policy[]) => ps.map((p) => `"${p.name}"`).join(', ');
  for (const [target, ps] of byTarget) {
    const traffic = ps.filter((p) => p.kind === 'TrafficPolicy');
    if (traffic.length > 1)
      for (const p of traffic)
        out.push({
          level: 'error',
          code: 'MultipleTrafficPolicies',
          message: `TrafficPolicies ${names(traffic)} all target "${target}"; only one may (the most recently revised one is in effect)`,
          policy: policyKey(p),
          path: 'serviceName',
        });
    const mtls = ps.filter((p) => p.kind === 'MutualTLSPolicy');
    if (mtls.length > 1)
      for (const p of mtls)
        out.push({
          level: 'warning',
          code: 'MultipleMutualTLSPolicies',
          message: `MutualTLSPolicies ${names(mtls)} all target ${target === '*' ? 'the whole mesh' : `"${target}"`}; the most recently revised one is in effect`,
          policy: policyKey(p),
          path: 'serviceName',
        });
    const defaults = new Set(ps.flatMap((p) => (p.kind === 'AuthorizationPolicy' && p.defaultAction ? [p.defaultAction] : [])));
    if (defaults.size > 1)
      for (const p of ps)
        if (p.kind === 'AuthorizationPolicy' && p.defaultAction)
          out.push({
            level: 'warning',
            code: 'ConflictingDefaultAction',
            message: `AuthorizationPolicies for ${target === '*' ? 'the whole mesh' : `"${target}"`} set both ALLOW and DENY as defaultAction; DENY is in effect`,
            policy: policyKey(p),
            path: 'defaultAction',
          });
  }

  const meshModes = new Set((byTarget.get('*') ?? []).flatMap((p) => (p.kind === 'MutualTLSPolicy' ? [p.mode] : [])));
  for (const p of valid) {
    if (p.kind !== 'MutualTLSPolicy' || p.serviceName === '*') continue;
    const m = p as MutualTLSPolicy;
    if (m.mode === 'strict' && meshModes.has('disable'))
      out.push({
        level: 'info',
        code: 'MtlsStricterThanMesh',
        message: `"${m.serviceName}" requires mTLS (strict) while the mesh-wide mode is disable: only callers with a mesh certificate can reach it`,
        policy: policyKey(p),
        path: 'mode',
      });
    if (m.mode !== 'strict' && meshModes.has('strict'))
      out.push({
        level: 'warning',
        code: 'MtlsWeakerThanMesh',
        message: `"${m.serviceName}" accepts plaintext (${m.mode}) although the mesh-wide mode is strict`,
        policy: policyKey(p),
        path: 'mode',
      });
  }

  return out.sort(
    (a, b) =>
      LEVELS[a.level] - LEVELS[b.level] ||
      cmp(a.policy, b.policy) ||
      cmp(a.path, b.path) ||
      cmp(a.code, b.code) ||
      cmp(a.message, b.message),
  );
}
