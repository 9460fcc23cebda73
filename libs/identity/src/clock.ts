/** An opaque timer handle from a {@link Clock}. */
export type TimerHandle = unknown;

/**
 * Time as WorkloadIdentity sees it: a port so that unit tests drive renewal and backoff with a fake
 * clock instead of waiting. Timers must not keep the process alive (the system clock unrefs them).
 */
export interface Clock {
  /** Epoch ms. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Node's clock; timers are unref'd so an idle identity never holds the process open. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    // setTimeout caps at 2^31-1 ms (~24.8 days); longer waits are chained.
    const t = setTimeout(fn, Math.min(Math.max(0, ms), 2 ** 31 - 1));
    t.unref();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};
