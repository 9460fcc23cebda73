import { describe, expect, it } from 'vitest';
import { decideFault } from './fault';

describe('decideFault', () => {
  it('draws delay and abort independently by percentage', () => {
    const fault = { delay: { fixedDelay: 50, percentage: 50 }, abort: { httpStatus: 503, percentage: 10 } };
    const seq =
      (...v: number[]) =>
      () =>
        v.shift() ?? 0.99;
    expect(decideFault(fault, seq(0.2, 0.05))).toEqual({ delayMs: 50, abortStatus: 503 });
    expect(decideFault(fault, seq(0.7, 0.05))).toEqual({ delayMs: undefined, abortStatus: 503 });
    expect(decideFault(fault, seq(0.7, 0.5))).toBeUndefined();
    let aborted = 0;
    let i = 0;
    for (; i < 10_000; i++) if (decideFault({ abort: { httpStatus: 500, percentage: 10 } })?.abortStatus) aborted++;
    expect(aborted / i).toBeGreaterThan(0.08);
    expect(aborted / i).toBeLessThan(0.12);
  });

  it('carries the gRPC status of an abort when the route sets one', () => {
    expect(decideFault({ abort: { httpStatus: 503, grpcStatus: 4, percentage: 100 } })).toEqual({
      delayMs: undefined,
      abortStatus: 503,
      abortGrpcStatus: 4,
    });
    expect(decideFault({ abort: { httpStatus: 503, grpcStatus: 0, percentage: 100 } })?.abortGrpcStatus).toBe(0);
    expect(decideFault({ abort: { httpStatus: 503, grpcStatus: 4, percentage: 0 } })).toBeUndefined();
  });
});
