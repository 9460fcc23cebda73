import { describe, expect, it } from 'vitest';
import { FaultSchema, RouteRuleSchema } from './route-rule.schema';

const rule = (fault: unknown) => ({ kind: 'RouteRule', name: 'r', serviceName: 'inventory', routes: [{ fault }] });

describe('RouteRule fault', () => {
  it('an abort may carry a gRPC status (0–16) for gRPC callers besides its HTTP status', () => {
    expect(FaultSchema.parse({ abort: { httpStatus: 503, grpcStatus: 14 } })).toEqual({
      abort: { httpStatus: 503, grpcStatus: 14, percentage: 100 },
    });
    expect(FaultSchema.parse({ abort: { httpStatus: 503, grpcStatus: 0, percentage: 5 } }).abort?.grpcStatus).toBe(0);
    expect(FaultSchema.parse({ abort: { httpStatus: 500 } }).abort).toEqual({ httpStatus: 500, percentage: 100 });
  });

  it('refuses a gRPC status outside 0–16, a fraction, or an abort without an HTTP status', () => {
    for (const [abort, path] of [
      [{ httpStatus: 503, grpcStatus: 17 }, 'routes.0.fault.abort.grpcStatus'],
      [{ httpStatus: 503, grpcStatus: -1 }, 'routes.0.fault.abort.grpcStatus'],
      [{ httpStatus: 503, grpcStatus: 1.5 }, 'routes.0.fault.abort.grpcStatus'],
      [{ grpcStatus: 14 }, 'routes.0.fault.abort.httpStatus'],
    ] as const) {
      const r = RouteRuleSchema.safeParse(rule({ abort }));
      expect(r.success, JSON.stringify(abort)).toBe(false);
      expect(r.error?.issues.map((i) => i.path.join('.'))).toContain(path);
    }
  });
});
