import type { SnapshotRouteV1 } from '@novamesh/contracts';

export type FaultSpec = NonNullable<SnapshotRouteV1['fault']>;

/** What to do to one request: delay it (ms), abort it (status), both, or neither (undefined fields). */
export interface FaultDecision {
  delayMs: number | undefined;
  abortStatus: number | undefined;
}

/**
 * Draws a route's fault injection for one request: the delay and the abort are drawn
 * independently, each with its percentage (0–100). Undefined when neither applies.
 */
export function decideFault(fault: FaultSpec, random: () => number = Math.random): FaultDecision | undefined {
  const delayMs = fault.delay && random() * 100 < fault.delay.percentage ? fault.delay.fixedDelay : undefined;
  const abortStatus = fault.abort && random() * 100 < fault.abort.percentage ? fault.abort.httpStatus : undefined;
  return delayMs === undefined && abortStatus === undefined ? undefined : { delayMs, abortStatus };
}
