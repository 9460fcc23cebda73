import type { Issue, Policy, RouteRule } from '@novamesh/contracts';
import type { CodedIssue } from './issues';
import { policyKey } from './policy-key';
import { matchCovers } from './route-overlap';

export interface CrossCheckContext {
  /** Labels of each registered endpoint of `service`, or undefined when it is not registered. */
  endpointLabels: (service: string) => Record<string, string>[] | undefined;
  /** The other stored policies (a stored revision of the checked policy itself is ignored). */
  policies: Policy[];
}

const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

const renderLabels = (l: Record<string, string>) =>
  Object.entries(l)
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

/** Subsets of a RouteRule that select no registered endpoint of its service. */
function emptySubsets(rule: RouteRule, endpoints: Record<string, string>[]): CodedIssue[] {
  const out: CodedIssue[] = [];
  rule.subsets.forEach((s, i) => {
    if (endpoints.some((labels) => selects(s.labels, labels))) return;
    const seen = [...new Set(endpoints.map(renderLabels))].slice(0, 5);
    out.push({
      code: 'SubsetNoEndpoints',
      path: `subsets[${i}].labels`,
      message: endpoints.length
        ? `select no registered endpoint of "${rule.serviceName}" (${renderLabels(s.labels)}); its endpoints have: ${seen.map((l) => l || '(no labels)').join('; ')}`
        : `select no endpoint: "${rule.serviceName}" has no registered endpoints`,
    });
  });
  return out;
}

/** Routes of `rule` shadowed by, or shadowing, routes of the service's other RouteRules (evaluated in name order). */
function crossRuleOverlaps(rule: RouteRule, others: RouteRule[]): CodedIssue[] {
  const out: CodedIssue[] = [];
  const routeName = (r: RouteRule, i: number) =>
    `RouteRule "${r.name}" routes[${i}]${r.routes[i]?.name ? ` ("${r.routes[i]?.name}")` : ''}`;
  rule.routes.forEach((route, j) => {
    for (const other of others) {
      const before = other.name < rule.name;
      const k = other.routes.findIndex((o) => (before ? matchCovers(o.match, route.match) : matchCovers(route.match, o.match)));
      if (k < 0) continue;
      out.push(
        before
          ? {
              code: 'UnreachableRoute',
              path: `routes[${j}].match`,
              message: `is unreachable: ${routeName(other, k)}, evaluated first (RouteRules apply in name order), matches every request this route matches`,
            }
          : {
              code: 'ShadowsRoute',
              path: `routes[${j}].match`,
              message: `makes ${routeName(other, k)} unreachable: this rule is evaluated first (RouteRules apply in name order) and this route matches every request that one matches`,
            },
      );
    }
  });
  return out;
}

/** The other policies of `policies` of the same kind as `policy` for the same target (serviceName). */
export function rivalsOf(policy: Policy, policies: readonly Policy[]): Policy[] {
  const key = policyKey(policy);
  return policies.filter((p) => p.kind === policy.kind && p.serviceName === policy.serviceName && policyKey(p) !== key);
}

/** crossCheck with stable codes, for analyze. */
export function crossCheckCoded(policy: Policy, ctx: CrossCheckContext): CodedIssue[] {
  const out: CodedIssue[] = [];
  const key = policyKey(policy);
  const others = ctx.policies.filter((p) => policyKey(p) !== key && p.serviceName === policy.serviceName);
  if (policy.serviceName !== '*') {
    const endpoints = ctx.endpointLabels(policy.serviceName);
    if (endpoints === undefined)
      out.push({
        code: 'ServiceNotRegistered',
        path: 'serviceName',
        message: `service "${policy.serviceName}" is not registered; the policy takes effect once it is`,
      });
    else if (policy.kind === 'RouteRule') out.push(...emptySubsets(policy, endpoints));
  }
  if (policy.kind === 'RouteRule')
    out.push(
      ...crossRuleOverlaps(
        policy,
        others.filter((p): p is RouteRule => p.kind === 'RouteRule'),
      ),
    );
  if (policy.kind === 'TrafficPolicy') {
    const rivals = rivalsOf(policy, ctx.policies).map((p) => `"${p.name}"`);
    if (rivals.length)
      out.push({
        code: 'MultipleTrafficPolicies',
        path: 'serviceName',
        message: `TrafficPolicy ${rivals.join(', ')} already targets "${policy.serviceName}"; only one may, and only the most recently revised one takes effect`,
      });
  }
  if (policy.kind === 'MutualTLSPolicy') {
    const rivals = rivalsOf(policy, ctx.policies).map((p) => `"${p.name}"`);
    if (rivals.length)
      out.push({
        code: 'MultipleMutualTLSPolicies',
        path: 'serviceName',
        message: `MutualTLSPolicy ${rivals.join(', ')} already targets "${policy.serviceName}"; only the most recently revised one takes effect`,
      });
  }
  return out;
}

/**
 * Warnings that need context: subset labels that no registered endpoint of the service has,
 * routes overlapping other RouteRules of the same service, policies for services not
 * registered, a second TrafficPolicy (or MutualTLSPolicy) for the same target.
 */
export function crossCheck(policy: Policy, ctx: CrossCheckContext): Issue[] {
  return crossCheckCoded(policy, ctx).map(({ path, message }) => ({ path, message }));
}
