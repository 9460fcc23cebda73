import { describe, expect, it } from 'vitest';
import { TokenBucket } from './token-bucket';

describe('TokenBucket', () => {
  it('starts full with its burst and refuses beyond it', () => {
    const b = TokenBucket.forRate(20, 1000, 0, 5);
    expect(Array.from({ length: 8 }, () => b.tryTake(0)).filter(Boolean)).toHaveLength(5);
    expect(b.msUntilToken()).toBeCloseTo(50);
    expect(b.msUntilFull()).toBeCloseTo(250);
  });

  it('refills continuously per second, never above capacity', () => {
    const b = TokenBucket.forRate(10, 1000, 0);
    for (let i = 0; i < 10; i++) expect(b.tryTake(0)).toBe(true);
    expect(b.tryTake(50)).toBe(false);
    expect(b.tryTake(100)).toBe(true);
    expect(b.tryTake(150)).toBe(false);
    expect(b.available(10_000)).toBe(10);
  });

  it('per minute: 60 per minute is one a second after the burst', () => {
    const b = TokenBucket.forRate(60, 60_000, 0);
    let ok = 0;
    for (let i = 0; i < 100; i++) if (b.tryTake(0)) ok++;
    expect(ok).toBe(60);
    expect(b.tryTake(999)).toBe(false);
    expect(b.tryTake(1000)).toBe(true);
    expect(b.msUntilToken()).toBeCloseTo(1000);
  });
});
