import { AuthorizationPolicySchema } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { compileAuthorizer, spiffeNamespace } from './authorizer';
import type { RequestView } from './request-view';

const policy = (p: Record<string, unknown>) =>
  AuthorizationPolicySchema.parse({ kind: 'AuthorizationPolicy', serviceName: 'orders', ...p });
const authz = (defaultAction: 'ALLOW' | 'DENY', ...policies: Record<string, unknown>[]) =>
  compileAuthorizer({ defaultAction, policies: policies.map(policy) });

const FRONTEND = 'spiffe://mesh.local/ns/shop/svc/frontend';
const LEGACY = 'spiffe://mesh.local/ns/legacy/svc/batch';
const req = (over: Partial<RequestView> = {}): RequestView => ({
  method: 'GET',
  path: '/orders/1',
  query: '',
  headers: {},
  principal: FRONTEND,
  port: 8080,
  ...over,
});

describe('compileAuthorizer', () => {
  it('denies on a DENY rule before looking at ALLOW policies, naming policy and rule', () => {
    const a = authz(
      'DENY',
      { name: 'allow-shop', action: 'ALLOW', rules: [{ from: { namespaces: ['shop', 'legacy'] } }] },
      { name: 'deny-legacy', action: 'DENY', rules: [{ to: { paths: ['/admin/*'] } }, { from: { namespaces: ['legacy'] } }] },
    );
    expect(a.check(req({ principal: LEGACY }))).toEqual({
      allowed: false,
      action: 'DENY',
      policy: 'deny-legacy',
      reason: 'denied by AuthorizationPolicy deny-legacy (rule 1)',
      code: 'RBAC_DENIED',
      audit: [],
    });
    expect(a.check(req())).toMatchObject({ allowed: true, policy: 'allow-shop', code: 'RBAC_ALLOWED' });
    expect(a.check(req({ path: '/admin/users' }))).toMatchObject({
      allowed: false,
      reason: 'denied by AuthorizationPolicy deny-legacy (rule 0)',
    });
  });

  it('falls back to the default action when no rule matched', () => {
    const allowOnlyShop = { name: 'allow-shop', action: 'ALLOW', rules: [{ from: { namespaces: ['shop'] } }] };
    expect(authz('DENY', allowOnlyShop).check(req({ principal: LEGACY }))).toEqual({
      allowed: false,
      action: 'DENY',
      reason:
        'no ALLOW policy matched (default DENY): policy allow-shop does not allow GET /orders/1 from spiffe://mesh.local/ns/legacy/svc/batch',
      code: 'RBAC_NO_MATCH',
      audit: [],
    });
    // A plaintext caller, and two ALLOW policies: both named.
    const allowOnlyAdmin = { name: 'allow-admin', action: 'ALLOW', rules: [{ to: { paths: ['/admin'] } }] };
    expect(authz('DENY', allowOnlyShop, allowOnlyAdmin).check(req({ principal: undefined })).reason).toBe(
      'no ALLOW policy matched (default DENY): policies allow-shop, allow-admin do not allow GET /orders/1 from a caller without a mesh identity (plaintext)',
    );
    expect(authz('DENY').check(req({ principal: LEGACY })).reason).toBe(
      'no policy allows GET /orders/1 from spiffe://mesh.local/ns/legacy/svc/batch (default DENY)',
    );
    expect(authz('ALLOW').check(req())).toMatchObject({
      allowed: true,
      code: 'RBAC_DEFAULT_ALLOW',
      reason: 'no policy applies (default ALLOW)',
    });
    expect(authz('ALLOW', allowOnlyShop).check(req({ principal: LEGACY }))).toMatchObject({ allowed: true, code: 'RBAC_DEFAULT_ALLOW' });
  });

  it('an ALLOW policy without rules matches nothing; an empty rule matches everything', () => {
    expect(authz('DENY', { name: 'allow-nothing', action: 'ALLOW' }).check(req())).toMatchObject({ allowed: false, code: 'RBAC_NO_MATCH' });
    expect(authz('DENY', { name: 'allow-all', action: 'ALLOW', rules: [{}] }).check(req({ principal: undefined }))).toMatchObject({
      allowed: true,
      policy: 'allow-all',
    });
  });

  it('matches principals exactly, by "/*" prefix, and "*" for any authenticated peer', () => {
    const a = (principals: string[]) => authz('DENY', { name: 'p', action: 'ALLOW', rules: [{ from: { principals } }] });
    expect(a([FRONTEND]).check(req()).allowed).toBe(true);
    expect(a([`${FRONTEND}-v2`]).check(req()).allowed).toBe(false);
    expect(a(['spiffe://mesh.local/ns/shop/*']).check(req()).allowed).toBe(true);
    expect(a(['spiffe://mesh.local/ns/shop/*']).check(req({ principal: LEGACY })).allowed).toBe(false);
    expect(a(['*']).check(req({ principal: LEGACY })).allowed).toBe(true);
    expect(a(['*']).check(req({ principal: undefined })).allowed).toBe(false);
  });

  it('matches namespaces from the caller’s SPIFFE ID; a plaintext caller only matches rules without from', () => {
    const a = authz(
      'DENY',
      { name: 'shop', action: 'ALLOW', rules: [{ from: { namespaces: ['shop'] } }] },
      { name: 'health', action: 'ALLOW', rules: [{ to: { paths: ['/healthz'] } }] },
    );
    expect(a.check(req()).policy).toBe('shop');
    const plaintext = req({ principal: undefined });
    expect(a.check(plaintext)).toMatchObject({ allowed: false, code: 'RBAC_NO_MATCH' });
    expect(a.check({ ...plaintext, path: '/healthz' })).toMatchObject({ allowed: true, policy: 'health' });
    expect(spiffeNamespace(FRONTEND)).toBe('shop');
    expect(spiffeNamespace('spiffe://td/svc/x')).toBeNull();
    expect(spiffeNamespace(undefined)).toBeNull();
  });

  it('requires every part of a rule: paths, methods, ports and header conditions', () => {
    const a = authz('DENY', {
      name: 'api-writes',
      action: 'ALLOW',
      rules: [
        {
          from: { principals: [FRONTEND], namespaces: ['shop'] },
          to: { paths: ['/orders/*', '/cart'], methods: ['POST', 'PUT'], ports: [8080] },
          when: { headers: { 'X-Api-Version': { regex: 'v[23]' }, 'x-debug': { present: false } } },
        },
      ],
    });
    const ok = req({ method: 'POST', headers: { 'x-api-version': 'v2' } });
    expect(a.check(ok).allowed).toBe(true);
    expect(a.check({ ...ok, path: '/cart' }).allowed).toBe(true);
    expect(a.check({ ...ok, path: '/cart/1' }).allowed).toBe(false);
    expect(a.check({ ...ok, path: '/orders' }).allowed).toBe(false);
    expect(a.check({ ...ok, method: 'GET' }).allowed).toBe(false);
    expect(a.check({ ...ok, port: 9090 }).allowed).toBe(false);
    expect(a.check({ ...ok, port: undefined }).allowed).toBe(false);
    expect(a.check({ ...ok, headers: { 'x-api-version': 'v1' } }).allowed).toBe(false);
    expect(a.check({ ...ok, headers: { 'x-api-version': 'v3', 'x-debug': '1' } }).allowed).toBe(false);
    expect(a.check({ ...ok, principal: 'spiffe://mesh.local/ns/other/svc/frontend' }).allowed).toBe(false);
    expect(authz('DENY', { name: 'any-path', action: 'ALLOW', rules: [{ to: { paths: ['*'] } }] }).check(ok).allowed).toBe(true);
  });

  it('lists matching AUDIT policies without letting them decide', () => {
    const a = authz(
      'ALLOW',
      { name: 'audit-admin', action: 'AUDIT', rules: [{ to: { paths: ['/admin/*'] } }] },
      { name: 'audit-legacy', action: 'AUDIT', rules: [{ from: { namespaces: ['legacy'] } }] },
      { name: 'deny-legacy-admin', action: 'DENY', rules: [{ from: { namespaces: ['legacy'] }, to: { paths: ['/admin/*'] } }] },
    );
    expect(a.check(req())).toMatchObject({ allowed: true, audit: [] });
    expect(a.check(req({ path: '/admin/x' }))).toMatchObject({ allowed: true, audit: ['audit-admin'] });
    expect(a.check(req({ path: '/admin/x', principal: LEGACY }))).toMatchObject({
      allowed: false,
      policy: 'deny-legacy-admin',
      audit: ['audit-admin', 'audit-legacy'],
    });
  });
});
