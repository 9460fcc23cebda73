import { POLICY_KINDS, RouteRuleSchema } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { INVALID_POLICIES } from './invalid-policies';
import { validatePolicy } from './validate';

describe('validatePolicy refuses invalid policies with the precise path and reason', () => {
  it('has a realistic table: more than 40 cases, every kind covered', () => {
    expect(INVALID_POLICIES.length).toBeGreaterThanOrEqual(40);
    const kinds = new Set(INVALID_POLICIES.map((c) => (c.policy as { kind?: string } | null)?.kind));
    for (const k of POLICY_KINDS) expect(kinds, k).toContain(k);
    expect(new Set(INVALID_POLICIES.map((c) => c.name)).size).toBe(INVALID_POLICIES.length);
  });

  it.each(INVALID_POLICIES)('$name → $path', ({ policy, path, message }) => {
    const r = validatePolicy(policy);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const hit = r.issues.find((i) => i.path === path && message.test(i.message));
    expect(hit, `issues: ${JSON.stringify(r.issues, null, 2)}`).toBeDefined();
  });
});

describe('validatePolicy reports every problem at once', () => {
  it('lists the problems of every route, the subsets and unknown fields together', () => {
    const r = validatePolicy({
      kind: 'RouteRule',
      name: 'reviews',
      serviceName: 'reviews',
      colour: 'blue',
      subsets: [{ name: 'v1', labels: { version: 'v1' } }],
      routes: [
        {
          match: { headers: { 'x-env': { regex: '(a+)+' } } },
          split: [
            { subset: 'v1', weight: 50 },
            { subset: 'v2', weight: 40 },
          ],
        },
        { match: { path: { regex: '(' } }, mirror: { subset: 'v9', percentage: 101 }, timeout: 'soon' },
      ],
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.map((i) => i.path).sort()).toEqual(
      [
        'colour',
        'routes[0].match.headers.x-env.regex',
        'routes[0].split',
        'routes[0].split[1].subset',
        'routes[1].match.path.regex',
        'routes[1].mirror.percentage',
        'routes[1].mirror.subset',
        'routes[1].timeout',
      ].sort(),
    );
  });

  it('caps the number of issues of a garbage document', () => {
    const r = validatePolicy({
      kind: 'RouteRule',
      name: 'x',
      serviceName: 'x',
      routes: Array.from({ length: 64 }, () => ({ a: 1, b: 2, c: 3 })),
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.length).toBe(101);
    expect(r.issues.at(-1)?.message).toBe('… and 92 more problems');
  });

  it('refuses huge and deeply nested input without throwing', () => {
    let deep: unknown = 'x';
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(validatePolicy({ kind: 'TrafficPolicy', description: deep })).toEqual({
      ok: false,
      issues: [{ path: '', message: 'is nested more than 32 levels deep (a policy has fewer than 10)' }],
    });
    const huge = { kind: 'RouteRule', routes: Array.from({ length: 50_000 }, () => ({})) };
    expect(validatePolicy(huge)).toMatchObject({ ok: false, issues: [{ path: '', message: expect.stringMatching(/too large/) }] });
  });

  it('reports a throwing getter instead of throwing', () => {
    const evil = {
      kind: 'MutualTLSPolicy',
      get name(): string {
        throw new Error('boom');
      },
    };
    expect(validatePolicy(evil)).toMatchObject({ ok: false, issues: [{ path: '', message: expect.stringMatching(/boom/) }] });
  });
});

describe('validatePolicy and header changes', () => {
  const rule = (headers: unknown) => ({ kind: 'RouteRule', name: 'r', serviceName: 'inventory', routes: [{ headers }] });

  it('refuses message framing and hop-by-hop headers, each at its path, and accepts others', () => {
    const r = validatePolicy(
      rule({
        request: { remove: ['x-debug', 'Content-Length'], set: { 'transfer-encoding': 'chunked' } },
        response: { add: { Connection: 'close' }, remove: ['te'] },
      }),
    );
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.map((i) => i.path)).toEqual([
      'routes[0].headers.request.set.transfer-encoding',
      'routes[0].headers.request.remove[1]',
      'routes[0].headers.response.add.Connection',
      'routes[0].headers.response.remove[0]',
    ]);
    for (const i of r.issues) expect(i.message).toContain('written by the sidecar itself');
    expect(validatePolicy(rule({ request: { set: { 'x-env': 'canary', host: 'b.example' }, remove: ['x-debug'] } })).ok).toBe(true);
  });

  it('leaves them to policy validation: a stored rule that has one still reads (the contract schema takes it)', () => {
    const stored = rule({ request: { remove: ['connection'] } });
    expect(RouteRuleSchema.safeParse(stored).success).toBe(true);
  });
});

describe('validatePolicy warnings', () => {
  const rule = (routes: unknown[]) => ({ kind: 'RouteRule', name: 'r', serviceName: 'reviews', routes });

  it('warns about a route after a catch-all prefix "/" route', () => {
    const r = validatePolicy(
      rule([
        { name: 'all', match: { path: { prefix: '/' } } },
        { name: 'api', match: { path: { prefix: '/api' } } },
      ]),
    );
    expect(r).toMatchObject({
      ok: true,
      warnings: [{ path: 'routes[1].match', message: 'is unreachable: routes[0] ("all") before it matches every request' }],
    });
  });

  it('warns about a route shadowed by a broader earlier one, not about a narrower earlier one', () => {
    const r = validatePolicy(
      rule([
        { match: { path: { prefix: '/api' }, methods: ['GET', 'POST'] } },
        { match: { path: { exact: '/api/users' }, methods: ['GET'], headers: { 'x-env': { exact: 'canary' } } } },
        { match: { path: { prefix: '/' }, headers: { 'x-env': { exact: 'canary' } } } },
        { match: { path: { regex: '/v[0-9]+/.*' } } },
        { match: { path: { exact: '/v2/users' } } },
      ]),
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.warnings.map((w) => w.path)).toEqual(['routes[1].match', 'routes[4].match']);
  });

  it('warns about retries that can never happen and empty ALLOW policies', () => {
    const t = validatePolicy({
      kind: 'TrafficPolicy',
      name: 't',
      serviceName: 'payment',
      timeouts: { request: '1s' },
      retries: { attempts: 2, perTryTimeout: '2s' },
      circuitBreaking: { maxRetries: 0 },
    });
    expect(t.ok && t.warnings.map((w) => w.path)).toEqual(['retries.perTryTimeout', 'retries.attempts']);
    const a = validatePolicy({ kind: 'AuthorizationPolicy', name: 'a', serviceName: 'payment', action: 'ALLOW' });
    expect(a.ok && a.warnings).toEqual([{ path: 'rules', message: expect.stringMatching(/allows nothing/) }]);
  });
});
