import type { Policy } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { crossCheck } from './cross-check';
import { validatePolicy } from './validate';

const p = (input: Record<string, unknown>): Policy => {
  const r = validatePolicy(input);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.policy;
};

const endpoints: Record<string, Record<string, string>[]> = {
  reviews: [
    { version: 'v1', zone: 'a' },
    { version: 'v2', zone: 'b' },
  ],
  payment: [],
};
const ctx = (policies: Policy[] = []) => ({ endpointLabels: (s: string) => endpoints[s], policies });

const canary = p({
  kind: 'RouteRule',
  name: 'reviews-canary',
  serviceName: 'reviews',
  subsets: [
    { name: 'v1', labels: { version: 'v1' } },
    { name: 'v3', labels: { version: 'v3' } },
    { name: 'v2-b', labels: { version: 'v2', zone: 'b' } },
  ],
  routes: [
    {
      match: { path: { prefix: '/api' } },
      split: [
        { subset: 'v1', weight: 50 },
        { subset: 'v3', weight: 50 },
      ],
    },
    { split: [{ subset: 'v2-b' }] },
  ],
});

describe('crossCheck', () => {
  it('warns about subsets that select labels no registered endpoint has', () => {
    expect(crossCheck(canary, ctx())).toEqual([
      {
        path: 'subsets[1].labels',
        message: 'select no registered endpoint of "reviews" (version=v3); its endpoints have: version=v1,zone=a; version=v2,zone=b',
      },
    ]);
  });

  it('warns about policies for services that are not registered, and subsets of a service without endpoints', () => {
    const orphan = p({ kind: 'MutualTLSPolicy', name: 'm', serviceName: 'ghost', mode: 'strict' });
    expect(crossCheck(orphan, ctx())).toEqual([
      { path: 'serviceName', message: 'service "ghost" is not registered; the policy takes effect once it is' },
    ]);
    const mesh = p({ kind: 'MutualTLSPolicy', name: 'm', serviceName: '*', mode: 'strict' });
    expect(crossCheck(mesh, ctx())).toEqual([]);
    const rr = p({ kind: 'RouteRule', name: 'r', serviceName: 'payment', subsets: [{ name: 'a', labels: { v: '1' } }], routes: [{}] });
    expect(crossCheck(rr, ctx())).toEqual([
      { path: 'subsets[0].labels', message: 'select no endpoint: "payment" has no registered endpoints' },
    ]);
  });

  it('warns about routes shadowed by, or shadowing, other RouteRules of the service (name order)', () => {
    const earlier = p({ kind: 'RouteRule', name: 'a-catch-all', serviceName: 'reviews', routes: [{ match: { path: { prefix: '/' } } }] });
    const later = p({
      kind: 'RouteRule',
      name: 'z-admin',
      serviceName: 'reviews',
      routes: [{ match: { path: { prefix: '/api/admin' } } }],
    });
    const other = p({ kind: 'RouteRule', name: 'a-other', serviceName: 'ratings', routes: [{}] });
    const issues = crossCheck(canary, ctx([earlier, later, other, canary]));
    expect(issues.filter((i) => i.path.startsWith('routes'))).toEqual([
      {
        path: 'routes[0].match',
        message:
          'is unreachable: RouteRule "a-catch-all" routes[0], evaluated first (RouteRules apply in name order), matches every request this route matches',
      },
      {
        path: 'routes[0].match',
        message:
          'makes RouteRule "z-admin" routes[0] unreachable: this rule is evaluated first (RouteRules apply in name order) and this route matches every request that one matches',
      },
      {
        path: 'routes[1].match',
        message:
          'is unreachable: RouteRule "a-catch-all" routes[0], evaluated first (RouteRules apply in name order), matches every request this route matches',
      },
      {
        path: 'routes[1].match',
        message:
          'makes RouteRule "z-admin" routes[0] unreachable: this rule is evaluated first (RouteRules apply in name order) and this route matches every request that one matches',
      },
    ]);
  });

  it('warns when another TrafficPolicy already targets the service, ignoring the stored revision of itself', () => {
    const t = (name: string) => p({ kind: 'TrafficPolicy', name, serviceName: 'reviews', loadBalancing: 'random' });
    expect(crossCheck(t('a'), ctx([t('a')]))).toEqual([]);
    expect(crossCheck(t('a'), ctx([t('a'), t('b')]))).toEqual([
      {
        path: 'serviceName',
        message: 'TrafficPolicy "b" already targets "reviews"; only one may, and only the most recently revised one takes effect',
      },
    ]);
  });
});
