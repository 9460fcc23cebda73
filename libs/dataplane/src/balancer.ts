import type { LoadBalancingAlgorithm } from '@novamesh/contracts';
import type { RequestView } from './request-view';

/**
 * An endpoint as the balancers see it. The caller owns these objects and keeps `active` (its
 * in-flight requests to the endpoint) current; balancers only read them.
 */
export interface LbEndpoint {
  id: string;
  /** Relative share of traffic; an endpoint of weight 0 (or less) is never picked, by any algorithm. */
  weight: number;
  /** In-flight requests, maintained by the caller; least-request compares it. */
  active: number;
  labels: Record<string, string>;
}

/**
 * Picks an endpoint per request from a fixed set (built once per eligible set; build a new one
 * when membership changes). Not safe to share between threads; within one event loop it is.
 */
export interface Balancer<E extends LbEndpoint> {
  readonly algorithm: LoadBalancingAlgorithm;
  /** The endpoints it picks from (weight > 0): in the given order, sorted by id for the hashing ones. */
  readonly endpoints: readonly E[];
  /**
   * An endpoint for `req`, avoiding the ids in `exclude` (endpoints a retry already tried) while
   * another one exists; when every endpoint is excluded it picks as if none were. Undefined only
   * when there is no endpoint at all.
   */
  pick(req: RequestView, exclude?: ReadonlySet<string>): E | undefined;
}

/** Options of {@link createBalancer}; `random` (default Math.random) makes tests deterministic. */
export interface BalancerOptions {
  random?: () => number;
}

/** The endpoints not in `exclude`, or all of them when that leaves none (a retry must go somewhere). */
export function allowedEndpoints<E extends LbEndpoint>(endpoints: readonly E[], exclude: ReadonlySet<string> | undefined): readonly E[] {
  if (!exclude || exclude.size === 0) return endpoints;
  const allowed = endpoints.filter((e) => !exclude.has(e.id));
  return allowed.length ? allowed : endpoints;
}

/** A uniformly random endpoint of those allowed; the fallback of the hashing balancers without a key. */
export function randomPick<E extends LbEndpoint>(
  endpoints: readonly E[],
  exclude: ReadonlySet<string> | undefined,
  random: () => number,
): E | undefined {
  const from = allowedEndpoints(endpoints, exclude);
  return from[Math.floor(random() * from.length)];
}

/** Endpoints that may receive traffic: weight > 0. Returns the input when none is dropped. */
export function pickable<E extends LbEndpoint>(endpoints: readonly E[]): readonly E[] {
  return endpoints.every((e) => e.weight > 0) ? endpoints : endpoints.filter((e) => e.weight > 0);
}

/**
 * A copy sorted by id: the hashing balancers build from it so that every sidecar, whatever
 * order its endpoint list came in, places keys on the same endpoints.
 */
export function byId<E extends LbEndpoint>(endpoints: readonly E[]): E[] {
  return [...endpoints].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
