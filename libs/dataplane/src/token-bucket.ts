/**
 * A token bucket: holds at most `capacity` tokens, refilled continuously at `perMs` tokens per
 * millisecond; each admitted request takes one. Starts full. Owns its state; single-threaded use,
 * time passed in (ms, monotonic), so tests drive it without timers.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly capacity: number,
    readonly perMs: number,
    now: number,
  ) {
    this.tokens = capacity;
    this.last = now;
  }

  /** `requests` per `windowMs`, with a burst of `capacity` (default `requests`). */
  static forRate(requests: number, windowMs: number, now: number, capacity = requests): TokenBucket {
    return new TokenBucket(capacity, requests / windowMs, now);
  }

  /** Tokens available at `now` (refills first). */
  available(now: number): number {
    if (now > this.last) {
      this.tokens = Math.min(this.capacity, this.tokens + (now - this.last) * this.perMs);
      this.last = now;
    }
    return this.tokens;
  }

  /** Takes one token if there is one at `now`; returns whether it did. */
  tryTake(now: number): boolean {
    if (this.available(now) < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** ms from the last refill until one whole token is available (0 when one is). */
  msUntilToken(): number {
    return this.tokens >= 1 ? 0 : (1 - this.tokens) / this.perMs;
  }

  /** ms from the last refill until the bucket is full again. */
  msUntilFull(): number {
    return (this.capacity - this.tokens) / this.perMs;
  }
}
