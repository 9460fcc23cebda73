/**
 * When to renew and how long to back off: pure functions of time and a random number, so the
 * policy is tested without timers. Lifetime counts from when the certificate became usable here —
 * the later of notBefore and its arrival — because the CA backdates notBefore for clock skew (5 min),
 * which on a short-lived certificate would otherwise pull the renewal point into the past.
 */

export interface RenewalPolicy {
  /** Renew at a random fraction of the lifetime in [min, max]; default [0.5, 0.8] (jitter spreads a fleet's renewals). */
  renewBetween: readonly [number, number];
  /** Warn (`expiring`) when still not renewed at this fraction of the lifetime; default 0.9. */
  expiringAt: number;
  /** First retry delay after a failed renewal (ms); default 1 s. */
  backoffInitialMs: number;
  /** Largest retry delay (ms); default 60 s. */
  backoffMaxMs: number;
  /**
   * Root rotation: when the trust bundle gains a root the certificate does not chain to, renew at a
   * random delay in [min, max] ms (never later than the scheduled renewal); default [5 s, 60 s].
   * The minimum gives every peer time to receive the bundle before a certificate from the new root
   * is presented to it; the spread keeps a fleet from re-issuing at once.
   */
  newRootRenewWithinMs: readonly [number, number];
}

export const DEFAULT_RENEWAL_POLICY: Readonly<RenewalPolicy> = Object.freeze({
  renewBetween: [0.5, 0.8] as const,
  expiringAt: 0.9,
  backoffInitialMs: 1_000,
  backoffMaxMs: 60_000,
  newRootRenewWithinMs: [5_000, 60_000] as const,
});

/** Checks a policy; throws a RangeError naming the bad field. */
export function checkRenewalPolicy(p: RenewalPolicy): RenewalPolicy {
  const [min, max] = p.renewBetween;
  if (!(min > 0 && min <= max && max < 1)) throw new RangeError(`renewBetween: must satisfy 0 < min <= max < 1, got [${min}, ${max}]`);
  if (!(p.expiringAt > 0 && p.expiringAt < 1)) throw new RangeError(`expiringAt: must be between 0 and 1, got ${p.expiringAt}`);
  if (!(p.backoffInitialMs > 0 && p.backoffMaxMs >= p.backoffInitialMs))
    throw new RangeError(`backoffInitialMs/backoffMaxMs: need 0 < initial <= max, got ${p.backoffInitialMs}/${p.backoffMaxMs}`);
  const [rmin, rmax] = p.newRootRenewWithinMs;
  if (!(rmin >= 0 && rmin <= rmax)) throw new RangeError(`newRootRenewWithinMs: must satisfy 0 <= min <= max, got [${rmin}, ${rmax}]`);
  return p;
}

/** Delay (ms) before renewing because the trust bundle gained a root; `random` in [0, 1). */
export function newRootRenewDelay(policy: RenewalPolicy, random: number): number {
  const [min, max] = policy.newRootRenewWithinMs;
  return Math.round(min + (max - min) * random);
}

/** The instant (epoch ms) to renew a certificate valid from `validFrom` to `notAfter`; `random` in [0, 1). */
export function renewalTime(validFrom: number, notAfter: number, policy: RenewalPolicy, random: number): number {
  const [min, max] = policy.renewBetween;
  return Math.round(validFrom + (notAfter - validFrom) * (min + (max - min) * random));
}

/** The instant to emit `expiring` if the certificate has not been replaced by then. */
export function expiringTime(validFrom: number, notAfter: number, policy: RenewalPolicy): number {
  return Math.round(validFrom + (notAfter - validFrom) * policy.expiringAt);
}

/**
 * Delay before retry number `attempt` (0 = first retry): exponential, capped, with "equal jitter"
 * (half fixed, half random) so a fleet that lost its CA at once does not come back in lockstep,
 * yet never retries sooner than half the nominal delay.
 */
export function backoffDelay(attempt: number, policy: RenewalPolicy, random: number): number {
  const nominal = Math.min(policy.backoffMaxMs, policy.backoffInitialMs * 2 ** Math.min(attempt, 30));
  return Math.round(nominal / 2 + (nominal / 2) * random);
}
