import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CompiledRetryPolicy, parseRetryAfter } from './retry-policy';

const policy = (p: Partial<ConstructorParameters<typeof CompiledRetryPolicy>[0]> = {}) => new CompiledRetryPolicy({ attempts: 2, ...p });

describe('CompiledRetryPolicy', () => {
  it('retries statuses by condition', () => {
    const gw = policy({ retryOn: ['gateway-error'] });
    expect([500, 502, 503, 504, 429].map((s) => gw.retriableStatus(s))).toEqual([false, true, true, true, false]);
    const any5xx = policy({ retryOn: ['5xx'] });
    expect([500, 501, 599, 404].map((s) => any5xx.retriableStatus(s))).toEqual([true, true, true, false]);
    const codes = policy({ retryOn: ['retriable-status-codes'], retriableStatusCodes: [429, 409] });
    expect([429, 409, 503].map((s) => codes.retriableStatus(s))).toEqual([true, true, false]);
    const grpc = policy({ retryOn: ['unavailable'] });
    expect(grpc.retriableStatus(200, '14')).toBe(true);
    expect(grpc.retriableStatus(200, '2')).toBe(false);
    expect(grpc.retriableStatus(503)).toBe(false);
  });

  it('retries failures with Envoy’s semantics: 5xx, gateway-error and reset cover all of them', () => {
    for (const c of ['5xx', 'gateway-error', 'reset'] as const)
      for (const f of ['connect-failure', 'refused-stream', 'reset', 'timeout'] as const)
        expect(policy({ retryOn: [c] }).retriableFailure(f)).toBe(true);
    const cf = policy({ retryOn: ['connect-failure'] });
    expect(['connect-failure', 'refused-stream', 'reset', 'timeout'].map((f) => cf.retriableFailure(f as 'reset'))).toEqual([
      true,
      false,
      false,
      false,
    ]);
    expect(policy({ retryOn: ['refused-stream'] }).retriableFailure('refused-stream')).toBe(true);
  });

  it('defaults to connect-failure, refused-stream, unavailable and gateway-error', () => {
    const p = policy();
    expect(p.retriableStatus(503)).toBe(true);
    expect(p.retriableStatus(500)).toBe(false);
    expect(p.retriableFailure('connect-failure')).toBe(true);
  });

  it('retries non-idempotent methods only when the request never reached the app', () => {
    const p = policy({ retryOn: ['5xx'] });
    expect(p.methodAllows('GET', undefined)).toBe(true);
    expect(p.methodAllows('PUT', 'reset')).toBe(true);
    expect(p.methodAllows('POST', undefined)).toBe(false);
    expect(p.methodAllows('POST', 'reset')).toBe(false);
    expect(p.methodAllows('PATCH', 'timeout')).toBe(false);
    expect(p.methodAllows('POST', 'connect-failure')).toBe(true);
    expect(p.methodAllows('PATCH', 'refused-stream')).toBe(true);
  });

  it('retries non-idempotent methods like the others when the policy sets retryNonIdempotent', () => {
    const p = policy({ retryOn: ['5xx'], retryNonIdempotent: true });
    expect(p.methodAllows('POST', undefined)).toBe(true);
    expect(p.methodAllows('POST', 'reset')).toBe(true);
    expect(p.methodAllows('PATCH', 'timeout')).toBe(true);
    expect(policy({ retryOn: ['5xx'], retryNonIdempotent: false }).methodAllows('POST', undefined)).toBe(false);
  });

  it('retries a gRPC call (a POST) that the server answered UNAVAILABLE, no other gRPC status', () => {
    const p = policy({ retryOn: ['unavailable'] });
    expect(p.methodAllows('POST', undefined, '14')).toBe(true);
    expect(p.methodAllows('POST', undefined, '13')).toBe(false);
    expect(p.methodAllows('POST', 'reset', '14')).toBe(false);
  });

  it('backs off exponentially with full jitter, never above maxInterval', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 20 }),
        fc.double({ min: 0, max: 0.999_999, noNaN: true }),
        (base, retry, r) => {
          const p = policy({ backoff: { baseInterval: base, jitter: true } });
          const d = p.backoff(retry, () => r);
          const ceiling = Math.min(base * 10, base * 2 ** (retry - 1));
          return d >= 0 && d < ceiling + 1 && d <= base * 10;
        },
      ),
    );
    const fixed = policy({ backoff: { baseInterval: 10, maxInterval: 50, jitter: false } });
    expect([1, 2, 3, 4, 5].map((n) => fixed.backoff(n))).toEqual([10, 20, 40, 50, 50]);
  });
});

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP dates', () => {
    const now = Date.parse('2025-01-01T00:00:00Z');
    expect(parseRetryAfter('3', now)).toBe(3000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Wed, 01 Jan 2025 00:00:02 GMT', now)).toBe(2000);
    expect(parseRetryAfter('Tue, 31 Dec 2024 23:59:00 GMT', now)).toBe(0);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
    expect(parseRetryAfter('-1', now)).toBeUndefined();
  });
});
