import { describe, expect, it } from 'vitest';
import { CircuitBreaker, type PendingAdmission } from './circuit-breaker';

describe('CircuitBreaker', () => {
  it('maxRequests: overflows at once beyond the limit, frees on release', () => {
    const b = new CircuitBreaker({ maxRequests: 2 });
    expect([b.acquire(), b.acquire(), b.acquire()]).toEqual([undefined, undefined, 'maxRequests']);
    b.release();
    expect(b.acquire()).toBeUndefined();
    expect(b.status()).toMatchObject({ active: 2, pending: 0, overflows: { maxRequests: 1 } });
  });

  it('maxConnections: queues up to maxPendingRequests, in order, then overflows', async () => {
    const b = new CircuitBreaker({ maxConnections: 1, maxPendingRequests: 2 });
    expect(b.acquire()).toBeUndefined();
    const order: number[] = [];
    const p1 = (b.acquire() as PendingAdmission).admitted;
    const p2 = (b.acquire() as PendingAdmission).admitted;
    void p1.then(() => order.push(1));
    void p2.then(() => order.push(2));
    expect(b.acquire()).toBe('maxPendingRequests');
    expect(b.status()).toMatchObject({ active: 1, pending: 2 });
    b.release();
    await p1;
    expect(order).toEqual([1]);
    b.release();
    await p2;
    b.release();
    expect(b.status()).toMatchObject({ active: 0, pending: 0, overflows: { maxPendingRequests: 1 } });
  });

  it('a pending request that gives up leaves the queue; one already handed a slot keeps it', async () => {
    const b = new CircuitBreaker({ maxConnections: 1, maxPendingRequests: 2 });
    expect(b.acquire()).toBeUndefined();
    const gaveUp = b.acquire() as PendingAdmission;
    const next = b.acquire() as PendingAdmission;
    expect(gaveUp.cancel()).toBe(true);
    expect(gaveUp.cancel()).toBe(false);
    expect(b.status()).toMatchObject({ active: 1, pending: 1 });
    // Its place is free again: one more may wait.
    const third = b.acquire() as PendingAdmission;
    expect(typeof third).toBe('object');
    expect(b.acquire()).toBe('maxPendingRequests');
    b.release();
    await next.admitted;
    // Handed a slot already: cancel says so, and the slot must be released as usual.
    expect(next.cancel()).toBe(false);
    b.release();
    await third.admitted;
    b.release();
    expect(b.status()).toMatchObject({ active: 0, pending: 0 });
  });

  it('maxRetries caps retries in flight; 0 forbids them', () => {
    const b = new CircuitBreaker({ maxRetries: 1 });
    expect([b.tryRetry(), b.tryRetry()]).toEqual([true, false]);
    b.retryDone();
    expect(b.tryRetry()).toBe(true);
    expect(new CircuitBreaker({ maxRetries: 0 }).tryRetry()).toBe(false);
    expect(new CircuitBreaker({}).tryRetry()).toBe(true);
  });
});
