import type { Balancer, LbEndpoint } from './balancer';
import { pickable } from './balancer';
import type { RequestView } from './request-view';

/**
 * Smooth weighted round robin (nginx): each pick adds every endpoint's weight to its current
 * value, takes the largest and subtracts the total from it. Endpoints get picks in proportion to
 * their weights, interleaved rather than in bursts; weight 0 is never picked. O(n) per pick,
 * which beats a heap for the tens of endpoints a service has. Owns its current values.
 */
export class WeightedBalancer<E extends LbEndpoint> implements Balancer<E> {
  readonly algorithm = 'weighted' as const;
  readonly endpoints: readonly E[];
  private readonly weights: Float64Array;
  private readonly current: Float64Array;
  private readonly total: number;

  constructor(endpoints: readonly E[]) {
    this.endpoints = pickable(endpoints);
    this.weights = Float64Array.from(this.endpoints, (e) => e.weight);
    this.current = new Float64Array(this.endpoints.length);
    this.total = this.weights.reduce((s, w) => s + w, 0);
  }

  pick(_req: RequestView, exclude?: ReadonlySet<string>): E | undefined {
    const { endpoints, weights, current } = this;
    const n = endpoints.length;
    if (n === 0) return undefined;
    const skip = exclude && exclude.size > 0 && endpoints.some((e) => !exclude.has(e.id)) ? exclude : undefined;
    let best = -1;
    let total = this.total;
    if (skip) total = 0;
    for (let i = 0; i < n; i++) {
      if (skip?.has((endpoints[i] as E).id)) continue;
      const w = weights[i] as number;
      if (skip) total += w;
      const c = (current[i] as number) + w;
      current[i] = c;
      if (best < 0 || c > (current[best] as number)) best = i;
    }
    current[best] = (current[best] as number) - total;
    return endpoints[best];
  }
}
