import type {
  AuthorizationPolicy,
  EffectivePolicyV1,
  MutualTLSPolicy,
  Policy,
  RateLimitPolicy,
  RouteRule,
  TrafficPolicy,
} from '@novamesh/contracts';
import { comparePolicies, policyKey } from './policy-key';

type Revised<P> = { policy: P; revision: number };

const byName = <P extends { name: string }>(a: Revised<P>, b: Revised<P>) =>
  a.policy.name < b.policy.name ? -1 : a.policy.name > b.policy.name ? 1 : 0;

/** The most recently revised policy (highest KV revision; by name on a tie, for determinism). */
function latest<P extends { name: string }>(ps: Revised<P>[]): Revised<P> | undefined {
  return [...ps].sort((a, b) => b.revision - a.revision || byName(a, b))[0];
}

const ofKind = <K extends Policy['kind']>(ps: Revised<Policy>[], kind: K) =>
  ps.filter((p): p is Revised<Extract<Policy, { kind: K }>> => p.policy.kind === kind);

/**
 * The effective policy of one service from all stored policies (filters to the ones that apply
 * to `service`, incl. mesh-wide). Pure and deterministic: the same policies in any order give
 * the same result. When several TrafficPolicies (or several MutualTLSPolicies of one scope)
 * target the service, the most recently revised one is in effect; `analyze` reports the conflict.
 */
export function computeEffective(
  service: string,
  policies: { policy: Policy; revision: number }[],
): Omit<EffectivePolicyV1, 'revision' | 'updatedAt'> {
  const own = policies.filter((p) => p.policy.serviceName === service);
  const meshWide = service === '*' ? [] : policies.filter((p) => p.policy.serviceName === '*');
  const used: Revised<Policy>[] = [];

  const traffic = latest(ofKind(own, 'TrafficPolicy'));
  if (traffic) used.push(traffic);

  const routes = ofKind(own, 'RouteRule').sort(byName);
  const rateLimits = ofKind(own, 'RateLimitPolicy').sort(byName);
  used.push(...routes, ...rateLimits);

  const authzOwn = ofKind(own, 'AuthorizationPolicy').sort(byName);
  const authzMesh = ofKind(meshWide, 'AuthorizationPolicy').sort(byName);
  const authz = [...authzMesh, ...authzOwn];
  used.push(...authz);
  const explicit = (ps: Revised<AuthorizationPolicy>[]) => {
    const set = ps.map((p) => p.policy.defaultAction).filter((a) => a !== undefined);
    return set.length === 0 ? undefined : set.includes('DENY') ? 'DENY' : 'ALLOW';
  };
  const defaultAction =
    explicit(authzOwn) ?? explicit(authzMesh) ?? (authz.some((p) => p.policy.action === 'ALLOW') ? ('DENY' as const) : ('ALLOW' as const));

  const mtlsPolicy = latest(ofKind(own, 'MutualTLSPolicy')) ?? latest(ofKind(meshWide, 'MutualTLSPolicy'));
  if (mtlsPolicy) used.push(mtlsPolicy);

  return {
    service,
    traffic: (traffic?.policy ?? null) as TrafficPolicy | null,
    routes: routes.map((p) => p.policy as RouteRule),
    rateLimits: rateLimits.map((p) => p.policy as RateLimitPolicy),
    authorization: { defaultAction, policies: authz.map((p) => p.policy as AuthorizationPolicy) },
    mtls: mtlsPolicy
      ? {
          mode: (mtlsPolicy.policy as MutualTLSPolicy).mode,
          source: policyKey(mtlsPolicy.policy),
          ...((mtlsPolicy.policy as MutualTLSPolicy).certificates
            ? { certificates: (mtlsPolicy.policy as MutualTLSPolicy).certificates }
            : {}),
        }
      : { mode: 'permissive', source: null },
    sources: used
      .sort((a, b) => comparePolicies(a.policy, b.policy))
      .map((p) => ({ kind: p.policy.kind, name: p.policy.name, revision: p.revision })),
  };
}
