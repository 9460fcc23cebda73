import type { Clock } from './outlier-detector';

const BUCKETS = 10;
const BUCKET_MS = 100;

/**
 * A retry budget over a sliding one-second window (ten 100 ms buckets): a retry is allowed while
 * the retries of the window stay within max(minRetriesPerSecond, ratio × requests of the window),
 * so a failing upstream sees at most that share of extra load. Counting a request costs a clock
 * read and two array writes. Owns its counters; single-threaded use.
 */
export class RetryBudget {
  private readonly requests = new Float64Array(BUCKETS);
  private readonly retries = new Float64Array(BUCKETS);
  private requestSum = 0;
  private retrySum = 0;
  /** Absolute index (now / 100 ms) of the newest bucket. */
  private head = 0;

  constructor(
    private readonly cfg: { ratio: number; minRetriesPerSecond: number },
    private readonly clock: Clock = { now: () => performance.now() },
  ) {}

  /** Counts a live (first-try) request. */
  onRequest(): void {
    const i = this.advance();
    this.requests[i] = (this.requests[i] ?? 0) + 1;
    this.requestSum++;
  }

  /** Takes one retry from the budget; false (nothing taken) when it is spent. */
  tryRetry(): boolean {
    const i = this.advance();
    if (this.retrySum + 1 > Math.max(this.cfg.minRetriesPerSecond, this.cfg.ratio * this.requestSum)) return false;
    this.retries[i] = (this.retries[i] ?? 0) + 1;
    this.retrySum++;
    return true;
  }

  /** Requests and retries in the current window. */
  window(): { requests: number; retries: number } {
    this.advance();
    return { requests: this.requestSum, retries: this.retrySum };
  }

  /** Drops buckets older than one second; returns the slot of the current one. */
  private advance(): number {
    const now = Math.floor(this.clock.now() / BUCKET_MS);
    if (now !== this.head) {
      const stale = Math.min(now - this.head, BUCKETS);
      for (let k = 1; k <= stale; k++) {
        const s = (this.head + k) % BUCKETS;
        this.requestSum -= this.requests[s] ?? 0;
        this.retrySum -= this.retries[s] ?? 0;
        this.requests[s] = 0;
        this.retries[s] = 0;
      }
      this.head = now;
    }
    return now % BUCKETS;
  }
}

/** Linkerd's default budget, used when a policy has retries but no `budget`: 20 % extra load, at least 10 retries a second. */
export const DEFAULT_RETRY_BUDGET = Object.freeze({ ratio: 0.2, minRetriesPerSecond: 10 });
