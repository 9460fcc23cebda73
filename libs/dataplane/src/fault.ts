import type { SnapshotRouteV1 } from '@novamesh/contracts';

export type FaultSpec = NonNullable<SnapshotRouteV1['fault']>;

/**
 * What to do to one request: delay it (ms), abort it (status), both, or neither (undefined fields).
 * An abort answers `abortStatus` to HTTP callers and `abortGrpcStatus` (when the route sets one) to
 * gRPC callers.
 */
export interface FaultDecision {
  delayMs: number | undefined;
  abortStatus: number | undefined;
  abortGrpcStatus?: number;
}

/**
 * Draws a route's fault injection for one request: the delay and the abort are drawn
 * independently, each with its percentage (0–100). Undefined when neither applies.
 */
export function decideFault(fault: FaultSpec, random: () => number = Math.random): FaultDecision | undefined {
  const delayMs = fault.delay && random() * 100 < fault.delay.percentage ? fault.delay.fixedDelay : undefined;
  const abort = fault.abort && random() * 100 < fault.abort.percentage ? fault.abort : undefined;
  if (delayMs === undefined && abort === undefined) return undefined;
  return {
    delayMs,
    abortStatus: abort?.httpStatus,
    ...(abort?.grpcStatus !== undefined ? { abortGrpcStatus: abort.grpcStatus } : {}),
  };
}
