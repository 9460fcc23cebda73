import { describe, expect, it } from 'vitest';
import { backoffDelay, checkRenewalPolicy, DEFAULT_RENEWAL_POLICY, newRootRenewDelay, renewalTime } from './renewal-schedule';

describe('renewal schedule', () => {
  it('renews between 50 % and 80 % of the lifetime, spread by the random number', () => {
    const p = DEFAULT_RENEWAL_POLICY;
    expect(renewalTime(0, 100_000, p, 0)).toBe(50_000);
    expect(renewalTime(0, 100_000, p, 0.5)).toBe(65_000);
    expect(renewalTime(0, 100_000, p, 0.999_999)).toBe(80_000);
  });

  it('backs off exponentially from 1 s to at most 60 s, never below half the nominal delay', () => {
    const p = DEFAULT_RENEWAL_POLICY;
    expect([0, 1, 2, 3, 4, 5, 6, 7, 50].map((n) => backoffDelay(n, p, 0))).toEqual([
      500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000,
    ]);
    expect([0, 1, 2, 6, 50].map((n) => backoffDelay(n, p, 0.999_999))).toEqual([1_000, 2_000, 4_000, 60_000, 60_000]);
  });

  it('refuses a renewal window outside (0, 1) or reversed, naming the field', () => {
    expect(() => checkRenewalPolicy({ ...DEFAULT_RENEWAL_POLICY, renewBetween: [0.8, 0.5] })).toThrow(/^renewBetween: /);
    expect(() => checkRenewalPolicy({ ...DEFAULT_RENEWAL_POLICY, renewBetween: [0.5, 1] })).toThrow(/^renewBetween: /);
    expect(() => checkRenewalPolicy({ ...DEFAULT_RENEWAL_POLICY, backoffMaxMs: 10 })).toThrow(/^backoffInitialMs/);
  });
});

describe('newRootRenewDelay', () => {
  it('spreads re-issues after a root rotation over [min, max] and checks the bounds', () => {
    const policy = { ...DEFAULT_RENEWAL_POLICY, newRootRenewWithinMs: [3_000, 4_000] as const };
    expect(newRootRenewDelay(policy, 0)).toBe(3_000);
    expect(newRootRenewDelay(policy, 0.5)).toBe(3_500);
    expect(newRootRenewDelay(DEFAULT_RENEWAL_POLICY, 0.999)).toBeLessThanOrEqual(60_000);
    expect(() => checkRenewalPolicy({ ...DEFAULT_RENEWAL_POLICY, newRootRenewWithinMs: [5, 1] })).toThrow(/^newRootRenewWithinMs: /);
  });
});
