import { type Issue, type Policy, PolicySchema, RESERVED_HEADERS, type RouteRule } from '@novamesh/contracts';
import { type CodedIssue, policyErrorMap, toPolicyIssues } from './issues';
import { isCatchAll, matchCovers } from './route-overlap';

export type ValidationResult = { ok: true; policy: Policy; warnings: Issue[] } | { ok: false; issues: Issue[] };

/** Inputs larger than this are refused before schema validation (a policy is a few hundred values). */
const MAX_VALUES = 20_000;
const MAX_DEPTH = 32;

/** Refuses inputs too large or too deeply nested to be a policy, without recursion. */
function checkSize(input: unknown): Issue | undefined {
  const stack: [unknown, number][] = [[input, 0]];
  let count = 0;
  while (stack.length) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (++count > MAX_VALUES) return { path: '', message: `is too large: more than ${MAX_VALUES} values (a policy has a few hundred)` };
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= MAX_DEPTH) return { path: '', message: `is nested more than ${MAX_DEPTH} levels deep (a policy has fewer than 10)` };
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return undefined;
}

/**
 * Schema + semantic checks (regex safety, weights, percentages, subsets); every problem at
 * once. Never throws, whatever the input (also for non-objects, huge or deeply nested input).
 * On success `policy` is the normalized policy (durations in ms, seed string maps typed,
 * defaults filled in) and `warnings` lists what is allowed but probably wrong.
 */
export function validatePolicy(input: unknown): ValidationResult {
  try {
    const tooBig = checkSize(input);
    if (tooBig) return { ok: false, issues: [tooBig] };
    const r = PolicySchema.safeParse(input, { error: policyErrorMap, reportInput: true });
    if (!r.success) {
      const issues = toPolicyIssues(r.error.issues, input);
      return { ok: false, issues: issues.length ? issues : [{ path: '', message: 'is not a valid policy' }] };
    }
    const reserved = r.data.kind === 'RouteRule' ? reservedHeaderIssues(r.data) : [];
    if (reserved.length) return { ok: false, issues: reserved };
    return { ok: true, policy: r.data, warnings: policyWarnings(r.data).map(({ path, message }) => ({ path, message })) };
  } catch (e) {
    // a throwing getter or proxy in the input; reported, never thrown
    return { ok: false, issues: [{ path: '', message: `internal validation error: ${e instanceof Error ? e.message : String(e)}` }] };
  }
}

/** Header changes a route may not make (RESERVED_HEADERS): each one, at its path. */
export function reservedHeaderIssues(rule: RouteRule): Issue[] {
  const out: Issue[] = [];
  const message = 'is written by the sidecar itself (message framing or a hop-by-hop header); a route cannot change it';
  rule.routes.forEach((route, i) => {
    for (const side of ['request', 'response'] as const) {
      const ops = route.headers?.[side];
      if (!ops) continue;
      for (const op of ['set', 'add'] as const)
        for (const name of Object.keys(ops[op] ?? {}))
          if (RESERVED_HEADERS.has(name.toLowerCase())) out.push({ path: `routes[${i}].headers.${side}.${op}.${name}`, message });
      (ops.remove ?? []).forEach((name, j) => {
        if (RESERVED_HEADERS.has(name.toLowerCase())) out.push({ path: `routes[${i}].headers.${side}.remove[${j}]`, message });
      });
    }
  });
  return out;
}

const label = (rule: RouteRule, i: number) => {
  const name = rule.routes[i]?.name;
  return `routes[${i}]${name ? ` ("${name}")` : ''}`;
};

/** Routes of one rule that an earlier route of the same rule shadows completely. */
export function unreachableRoutes(rule: RouteRule): CodedIssue[] {
  const out: CodedIssue[] = [];
  rule.routes.forEach((route, j) => {
    for (let i = 0; i < j; i++) {
      const earlier = rule.routes[i];
      if (!earlier || !matchCovers(earlier.match, route.match)) continue;
      out.push({
        code: 'UnreachableRoute',
        path: `routes[${j}].match`,
        message: isCatchAll(earlier.match)
          ? `is unreachable: ${label(rule, i)} before it matches every request`
          : `is unreachable: ${label(rule, i)} before it matches every request this route matches`,
      });
      break;
    }
  });
  return out;
}

/** Context-free warnings: allowed, but probably not what the author meant. */
export function policyWarnings(policy: Policy): CodedIssue[] {
  const out: CodedIssue[] = [];
  switch (policy.kind) {
    case 'TrafficPolicy': {
      const { retries, timeouts, circuitBreaking } = policy;
      if (retries?.perTryTimeout !== undefined && timeouts?.request !== undefined && retries.perTryTimeout >= timeouts.request)
        out.push({
          code: 'PerTryTimeoutTooLong',
          path: 'retries.perTryTimeout',
          message: `is not shorter than timeouts.request (${timeouts.request}ms), so no retry can ever happen in time`,
        });
      if (retries && retries.attempts > 0 && circuitBreaking?.maxRetries === 0)
        out.push({
          code: 'RetriesDisabled',
          path: 'retries.attempts',
          message: 'has no effect: circuitBreaking.maxRetries is 0, so no retry is ever allowed',
        });
      break;
    }
    case 'RouteRule':
      out.push(...unreachableRoutes(policy));
      policy.routes.forEach((r, i) => {
        if (r.timeout !== undefined && r.retries?.perTryTimeout !== undefined && r.retries.perTryTimeout >= r.timeout)
          out.push({
            code: 'PerTryTimeoutTooLong',
            path: `routes[${i}].retries.perTryTimeout`,
            message: `is not shorter than the route's timeout (${r.timeout}ms), so no retry can ever happen in time`,
          });
      });
      break;
    case 'RateLimitPolicy':
      if (policy.failureMode === 'closed' && !policy.limits.some((l) => l.scope === 'global'))
        out.push({
          code: 'FailureModeUnused',
          path: 'failureMode',
          message: 'only applies to global limits (when Redis is unreachable); this policy has none',
        });
      break;
    case 'AuthorizationPolicy':
      if (policy.rules.length === 0)
        out.push({
          code: 'NoRules',
          path: 'rules',
          message: `is empty, so this ${policy.action} policy matches no request${policy.action === 'ALLOW' ? ' and allows nothing' : ''}; use "rules: [{}]" to match every request`,
        });
      break;
    case 'MutualTLSPolicy':
      break;
  }
  return out;
}
