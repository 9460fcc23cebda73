import type { CircuitBreaking } from '@novamesh/contracts';

/** The limit that made a request (or retry) overflow. */
export type CircuitLimit = 'maxConnections' | 'maxPendingRequests' | 'maxRequests' | 'maxRetries';

/** Counters of one breaker, for `/clusters`. */
export interface CircuitBreakerStatus {
  limits: CircuitBreaking;
  active: number;
  pending: number;
  activeRetries: number;
  overflows: Record<CircuitLimit, number>;
}

/**
 * A request waiting as pending for a connection. `admitted` resolves when a slot was handed to it;
 * `cancel` gives its place up (its request timeout ran out, its client went away): true when it
 * was still waiting, false when a slot was already handed to it — then it holds that slot and must
 * {@link CircuitBreaker.release} it like any admitted request.
 */
export interface PendingAdmission {
  readonly admitted: Promise<void>;
  cancel(): boolean;
}

/**
 * Envoy's circuit breaking for one upstream cluster, as counters the caller drives:
 * `maxRequests` caps requests in flight (over it: overflow at once); `maxConnections` caps the
 * requests in flight on HTTP/1.1 connections (one request per connection at a time), so requests
 * beyond it wait as pending, and more than `maxPendingRequests` waiting overflow; `maxRetries`
 * caps retries in flight. Unset limits do not apply. Owns its counters; single-threaded use.
 */
export class CircuitBreaker {
  private active = 0;
  private activeRetries = 0;
  private readonly waiting: (() => void)[] = [];
  readonly overflows: Record<CircuitLimit, number> = { maxConnections: 0, maxPendingRequests: 0, maxRequests: 0, maxRetries: 0 };
  private readonly maxActive: number;

  constructor(readonly limits: CircuitBreaking) {
    this.maxActive = Math.min(limits.maxRequests ?? Infinity, limits.maxConnections ?? Infinity);
  }

  /**
   * Admits a request: undefined when it may go now, a {@link PendingAdmission} when it waits as
   * pending (admitted when a slot frees, in arrival order; a waiter that gives up leaves the queue),
   * or the limit it overflowed (nothing taken). Every admitted request (now or after waiting) must
   * call {@link release} exactly once.
   */
  acquire(): CircuitLimit | PendingAdmission | undefined {
    if (this.active < this.maxActive) {
      this.active++;
      return undefined;
    }
    if (this.limits.maxRequests !== undefined && this.active >= this.limits.maxRequests) return this.overflow('maxRequests');
    // Only maxConnections is reached: wait for a connection, unless too many already wait.
    this.overflows.maxConnections++;
    if (this.waiting.length >= (this.limits.maxPendingRequests ?? Infinity)) return this.overflow('maxPendingRequests');
    let admit!: () => void;
    const admitted = new Promise<void>((resolve) => {
      admit = resolve;
    });
    this.waiting.push(admit);
    return {
      admitted,
      cancel: () => {
        const i = this.waiting.indexOf(admit);
        if (i < 0) return false;
        this.waiting.splice(i, 1);
        return true;
      },
    };
  }

  /** Ends an admitted request; hands its slot to the oldest pending one. */
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }

  /** Takes a retry slot; false (and an overflow counted) when `maxRetries` retries are in flight. */
  tryRetry(): boolean {
    if (this.limits.maxRetries !== undefined && this.activeRetries >= this.limits.maxRetries) {
      this.overflows.maxRetries++;
      return false;
    }
    this.activeRetries++;
    return true;
  }

  retryDone(): void {
    this.activeRetries--;
  }

  status(): CircuitBreakerStatus {
    return {
      limits: this.limits,
      active: this.active,
      pending: this.waiting.length,
      activeRetries: this.activeRetries,
      overflows: { ...this.overflows },
    };
  }

  private overflow(limit: CircuitLimit): CircuitLimit {
    this.overflows[limit]++;
    return limit;
  }
}
