import { describe, expect, it } from 'vitest';
import { parsePolicyKey, policyKey } from './policy-key';

describe('policy keys', () => {
  it('round-trips kind and name', () => {
    expect(policyKey({ kind: 'RouteRule', name: 'reviews-canary' })).toBe('RouteRule.reviews-canary');
    expect(parsePolicyKey('RouteRule.reviews-canary')).toEqual({ kind: 'RouteRule', name: 'reviews-canary' });
  });

  it.each(['RouteRule', 'RouteRule.', '.x', 'Route.x', 'RouteRule.Bad_Name', 'RouteRule.a.b', ''])('refuses %j', (key) => {
    expect(parsePolicyKey(key)).toBeUndefined();
  });
});
