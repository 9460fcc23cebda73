import type { AuthorizationPolicy, AuthorizationRule, InboundV1 } from '@novamesh/contracts';
import { headerValue, type RequestView } from './request-view';
import { compileStringMatch, type StringMatcher } from './string-match';

/** Stable codes of an authorization decision (access logs and the 403 body switch on these). */
export type AuthzCode = 'RBAC_DENIED' | 'RBAC_ALLOWED' | 'RBAC_NO_MATCH' | 'RBAC_DEFAULT_ALLOW';

/** What the inbound side does with a request, and why. */
export interface AuthzDecision {
  readonly allowed: boolean;
  readonly action: 'ALLOW' | 'DENY';
  /** The AuthorizationPolicy whose rule decided; absent when the default action did. */
  readonly policy?: string;
  /** Human and stable: `denied by AuthorizationPolicy deny-legacy (rule 0)`. */
  readonly reason: string;
  readonly code: AuthzCode;
  /** AUDIT policies with a rule that matched (for the access log). */
  readonly audit: readonly string[];
}

/** Decides inbound requests; compiled once per snapshot, immutable, shareable. */
export interface Authorizer {
  check(req: RequestView): AuthzDecision;
}

/** What a request is checked against, computed once per check. */
interface Caller {
  req: RequestView;
  /** The `ns/<namespace>` segment of the principal; null when absent, undefined until needed. */
  namespace: string | null | undefined;
}

type RuleTest = (c: Caller) => boolean;

/** `spiffe://<td>/ns/<namespace>/...` → namespace; null for other shapes. */
export function spiffeNamespace(principal: string | undefined): string | null {
  if (!principal?.startsWith('spiffe://')) return null;
  const slash = principal.indexOf('/', 9);
  if (slash < 0 || !principal.startsWith('/ns/', slash)) return null;
  const end = principal.indexOf('/', slash + 4);
  const ns = principal.slice(slash + 4, end < 0 ? undefined : end);
  return ns || null;
}

function namespaceOf(c: Caller): string | null {
  if (c.namespace === undefined) c.namespace = spiffeNamespace(c.req.principal);
  return c.namespace;
}

function startsWithAny(text: string, prefixes: readonly string[]): boolean {
  for (const p of prefixes) if (text.startsWith(p)) return true;
  return false;
}

/** `*` any authenticated peer, `.../*` a prefix, else exact; never matches a plaintext caller. */
function principalTest(patterns: readonly string[]): (principal: string | undefined) => boolean {
  if (patterns.includes('*')) return (p) => p !== undefined;
  const exact = new Set(patterns.filter((p) => !p.endsWith('/*')));
  const prefixes = patterns.filter((p) => p.endsWith('/*')).map((p) => p.slice(0, -1));
  return (p) => p !== undefined && (exact.has(p) || startsWithAny(p, prefixes));
}

/** `*` any path, `/api/*` a prefix (`/api/`), else exact. */
function pathTest(patterns: readonly string[]): (path: string) => boolean {
  if (patterns.includes('*')) return () => true;
  const exact = new Set(patterns.filter((p) => !p.endsWith('*')));
  const prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
  return (path) => exact.has(path) || startsWithAny(path, prefixes);
}

/** One rule as a conjunction of tests; omitted parts add none. */
function compileRule(rule: AuthorizationRule): RuleTest {
  const tests: RuleTest[] = [];
  const from = rule.from;
  if (from?.principals) {
    const test = principalTest(from.principals);
    tests.push((c) => test(c.req.principal));
  }
  if (from?.namespaces) {
    const namespaces = new Set(from.namespaces);
    tests.push((c) => {
      const ns = namespaceOf(c);
      return ns !== null && namespaces.has(ns);
    });
  }
  const to = rule.to;
  if (to?.paths) {
    const test = pathTest(to.paths);
    tests.push((c) => test(c.req.path));
  }
  if (to?.methods) {
    const methods: readonly string[] = to.methods;
    tests.push((c) => methods.includes(c.req.method));
  }
  if (to?.ports) {
    const ports = to.ports;
    tests.push((c) => c.req.port !== undefined && ports.includes(c.req.port));
  }
  for (const [name, sm] of Object.entries(rule.when?.headers ?? {})) {
    const lower = name.toLowerCase();
    const test: StringMatcher = compileStringMatch(sm);
    tests.push((c) => test(headerValue(c.req.headers, lower)));
  }
  if (tests.length === 0) return () => true;
  if (tests.length === 1) return tests[0] as RuleTest;
  return (c) => {
    for (const t of tests) if (!t(c)) return false;
    return true;
  };
}

interface CompiledPolicy {
  name: string;
  rules: RuleTest[];
  /** The decision when rule i matched, built once (no string work per request). */
  decisions: AuthzDecision[];
}

const NONE: readonly string[] = Object.freeze([]);

function decision(d: Omit<AuthzDecision, 'audit'>): AuthzDecision {
  return Object.freeze({ ...d, audit: NONE });
}

function compilePolicy(p: AuthorizationPolicy): CompiledPolicy {
  return {
    name: p.name,
    rules: p.rules.map(compileRule),
    decisions: p.rules.map((_, i) =>
      p.action === 'DENY'
        ? decision({
            allowed: false,
            action: 'DENY',
            policy: p.name,
            code: 'RBAC_DENIED',
            reason: `denied by AuthorizationPolicy ${p.name} (rule ${i})`,
          })
        : decision({
            allowed: true,
            action: 'ALLOW',
            policy: p.name,
            code: 'RBAC_ALLOWED',
            reason: `allowed by AuthorizationPolicy ${p.name} (rule ${i})`,
          }),
    ),
  };
}

/** The index of the first rule of `p` that matches, or -1. A policy without rules matches nothing. */
function firstMatch(p: CompiledPolicy, c: Caller): number {
  for (let i = 0; i < p.rules.length; i++) if ((p.rules[i] as RuleTest)(c)) return i;
  return -1;
}

/** The decision of the first policy (in order) with a matching rule. */
function decide(policies: readonly CompiledPolicy[], c: Caller): AuthzDecision | undefined {
  for (const p of policies) {
    const i = firstMatch(p, c);
    if (i >= 0) return p.decisions[i];
  }
  return undefined;
}

/**
 * Compiles the inbound authorization of a snapshot (Istio semantics): a request matching a rule
 * of any DENY policy is denied; else one matching a rule of an ALLOW policy is allowed; else
 * `defaultAction` decides (the effective policy made it DENY when an ALLOW policy applies).
 * AUDIT policies never decide; their matches are listed in `audit`. Within a rule every part
 * must hold (principals and namespaces too); omitted parts match everything; a plaintext caller
 * has no principal, so only rules without `from` principals/namespaces match it. Decisions are
 * frozen and shared between requests.
 */
export function compileAuthorizer(authorization: InboundV1['authorization']): Authorizer {
  const byAction = (action: AuthorizationPolicy['action']) => authorization.policies.filter((p) => p.action === action).map(compilePolicy);
  const deny = byAction('DENY');
  const allow = byAction('ALLOW');
  const audit = byAction('AUDIT');
  const fallback =
    authorization.defaultAction === 'ALLOW'
      ? decision({
          allowed: true,
          action: 'ALLOW',
          code: 'RBAC_DEFAULT_ALLOW',
          reason: allow.length ? 'no ALLOW policy matched (default ALLOW)' : 'no policy applies (default ALLOW)',
        })
      : undefined;
  // Names the ALLOW policies that could have let the request in, and the request and who sent it
  // (built on the deny path only; decisions that hold for every request are shared).
  const allowNames = allow.map((p) => p.name).join(', ');
  const noMatch = (c: Caller): AuthzDecision => {
    const what = `${c.req.method} ${c.req.path.slice(0, 200)} from ${c.req.principal ?? 'a caller without a mesh identity (plaintext)'}`;
    return decision({
      allowed: false,
      action: 'DENY',
      code: 'RBAC_NO_MATCH',
      reason: allowNames
        ? `no ALLOW policy matched (default DENY): ${allow.length === 1 ? `policy ${allowNames} does` : `policies ${allowNames} do`} not allow ${what}`
        : `no policy allows ${what} (default DENY)`,
    });
  };

  return {
    check(req: RequestView): AuthzDecision {
      const caller: Caller = { req, namespace: undefined };
      let audited: string[] | undefined;
      for (const p of audit) {
        if (firstMatch(p, caller) < 0) continue;
        audited ??= [];
        audited.push(p.name);
      }
      const result = decide(deny, caller) ?? decide(allow, caller) ?? fallback ?? noMatch(caller);
      return audited ? { ...result, audit: audited } : result;
    },
  };
}
