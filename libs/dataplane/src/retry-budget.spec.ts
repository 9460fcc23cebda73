import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RetryBudget } from './retry-budget';

describe('RetryBudget', () => {
  it('allows minRetriesPerSecond without traffic, then ratio × requests', () => {
    let now = 0;
    const b = new RetryBudget({ ratio: 0.5, minRetriesPerSecond: 2 }, { now: () => now });
    expect([b.tryRetry(), b.tryRetry(), b.tryRetry()]).toEqual([true, true, false]);
    for (let i = 0; i < 10; i++) b.onRequest();
    expect([b.tryRetry(), b.tryRetry(), b.tryRetry(), b.tryRetry()]).toEqual([true, true, true, false]);
    now = 1000; // the window slid past all of it
    expect(b.window()).toEqual({ requests: 0, retries: 0 });
    expect(b.tryRetry()).toBe(true);
  });

  it('never lets the retries of the last second exceed the budget', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 150 }), fc.boolean()), { maxLength: 400 }),
        fc.double({ min: 0.05, max: 1, noNaN: true }),
        fc.integer({ min: 0, max: 5 }),
        (events, ratio, min) => {
          let now = 0;
          const b = new RetryBudget({ ratio, minRetriesPerSecond: min }, { now: () => now });
          const log: { t: number; retry: boolean }[] = [];
          for (const [dt, isRetry] of events) {
            now += dt;
            if (!isRetry) {
              b.onRequest();
              log.push({ t: now, retry: false });
            } else if (b.tryRetry()) {
              log.push({ t: now, retry: true });
              // Everything in the window the budget counts (the bucket-aligned last second).
              const from = (Math.floor(now / 100) - 9) * 100;
              const inWindow = log.filter((e) => e.t >= from);
              const retries = inWindow.filter((e) => e.retry).length;
              const requests = inWindow.length - retries;
              if (retries > Math.max(min, ratio * requests)) return false;
            }
          }
          return true;
        },
      ),
    );
  });
});
