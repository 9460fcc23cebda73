import type { Policy } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { analyze } from './analyze';
import { validatePolicy } from './validate';

const p = (input: Record<string, unknown>): Policy => {
  const r = validatePolicy(input);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.policy;
};

const services = [
  { name: 'reviews', endpointLabels: [{ version: 'v1' }, { version: 'v2' }] },
  { name: 'payment', endpointLabels: [{ version: 'v1' }] },
  { name: 'legacy', endpointLabels: [{}] },
];

const codes = (fs: ReturnType<typeof analyze>) => fs.map((f) => `${f.level} ${f.code} ${f.policy ?? ''} ${f.path ?? ''}`.trim());

describe('analyze', () => {
  it('finds nothing in a consistent mesh', () => {
    const policies = [
      p({ kind: 'TrafficPolicy', name: 't', serviceName: 'payment', loadBalancing: 'least_request' }),
      p({
        kind: 'RouteRule',
        name: 'r',
        serviceName: 'reviews',
        subsets: [{ name: 'v1', labels: { version: 'v1' } }],
        routes: [{ split: [{ subset: 'v1' }] }],
      }),
      p({ kind: 'MutualTLSPolicy', name: 'mesh', serviceName: '*', mode: 'strict' }),
    ];
    expect(analyze(policies, services)).toEqual([]);
  });

  it('reports more than one TrafficPolicy per service as an error on each', () => {
    const fs = analyze(
      [
        p({ kind: 'TrafficPolicy', name: 'a', serviceName: 'payment' }),
        p({ kind: 'TrafficPolicy', name: 'b', serviceName: 'payment' }),
        p({ kind: 'TrafficPolicy', name: 'c', serviceName: 'reviews' }),
      ],
      services,
    );
    expect(fs).toEqual([
      {
        level: 'error',
        code: 'MultipleTrafficPolicies',
        message: 'TrafficPolicies "a", "b" all target "payment"; only one may (the most recently revised one is in effect)',
        policy: 'TrafficPolicy.a',
        path: 'serviceName',
      },
      {
        level: 'error',
        code: 'MultipleTrafficPolicies',
        message: 'TrafficPolicies "a", "b" all target "payment"; only one may (the most recently revised one is in effect)',
        policy: 'TrafficPolicy.b',
        path: 'serviceName',
      },
    ]);
  });

  it('reports unregistered services, empty subsets, unreachable routes and unused subsets', () => {
    const fs = analyze(
      [
        p({ kind: 'RateLimitPolicy', name: 'l', serviceName: 'ghost', limits: [{ name: 'x', requests: 1, per: 'second' }] }),
        p({
          kind: 'RouteRule',
          name: 'b-rule',
          serviceName: 'reviews',
          subsets: [
            { name: 'v1', labels: { version: 'v1' } },
            { name: 'v3', labels: { version: 'v3' } },
            { name: 'spare', labels: { version: 'v2' } },
          ],
          routes: [
            {
              match: { path: { prefix: '/' } },
              split: [
                { subset: 'v1', weight: 90 },
                { subset: 'v3', weight: 10 },
              ],
            },
            { match: { path: { prefix: '/x' } } },
          ],
        }),
        p({ kind: 'RouteRule', name: 'c-rule', serviceName: 'reviews', routes: [{ match: { path: { exact: '/y' } } }] }),
      ],
      services,
    );
    expect(codes(fs)).toEqual([
      'warning ServiceNotRegistered RateLimitPolicy.l serviceName',
      'warning UnreachableRoute RouteRule.b-rule routes[1].match',
      'warning SubsetNoEndpoints RouteRule.b-rule subsets[1].labels',
      'warning UnreachableRoute RouteRule.c-rule routes[0].match',
      'info UnusedSubset RouteRule.b-rule subsets[2]',
    ]);
  });

  it('notes mTLS overrides of the mesh-wide mode', () => {
    const disabled = analyze(
      [
        p({ kind: 'MutualTLSPolicy', name: 'mesh', serviceName: '*', mode: 'disable' }),
        p({ kind: 'MutualTLSPolicy', name: 'pay', serviceName: 'payment', mode: 'strict' }),
      ],
      services,
    );
    expect(codes(disabled)).toEqual(['info MtlsStricterThanMesh MutualTLSPolicy.pay mode']);
    const strict = analyze(
      [
        p({ kind: 'MutualTLSPolicy', name: 'mesh', serviceName: '*', mode: 'strict' }),
        p({ kind: 'MutualTLSPolicy', name: 'old', serviceName: 'legacy', mode: 'disable' }),
        p({ kind: 'MutualTLSPolicy', name: 'mesh-2', serviceName: '*', mode: 'permissive' }),
      ],
      services,
    );
    expect(codes(strict)).toEqual([
      'warning MultipleMutualTLSPolicies MutualTLSPolicy.mesh serviceName',
      'warning MultipleMutualTLSPolicies MutualTLSPolicy.mesh-2 serviceName',
      'warning MtlsWeakerThanMesh MutualTLSPolicy.old mode',
    ]);
  });

  it('reports a stored policy that no longer validates, and conflicting default actions', () => {
    const broken = { kind: 'MutualTLSPolicy', name: 'm', serviceName: 'payment', mode: 'sometimes' } as unknown as Policy;
    const fs = analyze(
      [
        broken,
        p({ kind: 'AuthorizationPolicy', name: 'a', serviceName: 'payment', action: 'DENY', defaultAction: 'ALLOW', rules: [{}] }),
        p({ kind: 'AuthorizationPolicy', name: 'b', serviceName: 'payment', action: 'AUDIT', defaultAction: 'DENY', rules: [{}] }),
      ],
      services,
    );
    expect(codes(fs)).toEqual([
      'error InvalidPolicy MutualTLSPolicy.m mode',
      'warning ConflictingDefaultAction AuthorizationPolicy.a defaultAction',
      'warning ConflictingDefaultAction AuthorizationPolicy.b defaultAction',
    ]);
    expect(fs[0]?.message).toBe('must be one of "strict", "permissive", "disable" (received "sometimes")');
  });
});
