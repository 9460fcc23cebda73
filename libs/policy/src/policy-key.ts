import { POLICY_KINDS, type Policy, type PolicyKind, SERVICE_NAME_PATTERN } from '@novamesh/contracts';

/** KV key of a policy: `${kind}.${name}` (both are subject-safe tokens). */
export function policyKey(p: { kind: PolicyKind; name: string }): string {
  return `${p.kind}.${p.name}`;
}

/** The kind and name of a policy KV key, or undefined when `key` is not one. */
export function parsePolicyKey(key: string): { kind: PolicyKind; name: string } | undefined {
  const dot = key.indexOf('.');
  if (dot <= 0) return undefined;
  const kind = key.slice(0, dot);
  const name = key.slice(dot + 1);
  if (!(POLICY_KINDS as readonly string[]).includes(kind) || !SERVICE_NAME_PATTERN.test(name)) return undefined;
  return { kind: kind as PolicyKind, name };
}

/** Services a policy applies to: [serviceName], or '*' for mesh-wide. */
export function policyTargets(policy: Policy): string[] {
  return [policy.serviceName];
}

/** Orders policies by kind (POLICY_KINDS order), then name; code-unit order, independent of locale. */
export function comparePolicies(a: { kind: PolicyKind; name: string }, b: { kind: PolicyKind; name: string }): number {
  const k = POLICY_KINDS.indexOf(a.kind) - POLICY_KINDS.indexOf(b.kind);
  if (k !== 0) return k;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
