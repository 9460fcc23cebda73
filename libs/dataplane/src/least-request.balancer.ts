import { allowedEndpoints, type Balancer, type LbEndpoint, pickable } from './balancer';
import type { RequestView } from './request-view';

/**
 * Envoy's least request: draws `choiceCount` endpoints at random (with replacement) and takes
 * the one with the fewest in-flight requests (`active`, kept by the caller); ties go to the
 * first drawn. O(choiceCount) per pick.
 */
export class LeastRequestBalancer<E extends LbEndpoint> implements Balancer<E> {
  readonly algorithm = 'least-request' as const;
  readonly endpoints: readonly E[];

  constructor(
    endpoints: readonly E[],
    private readonly choiceCount = 2,
    private readonly random: () => number = Math.random,
  ) {
    this.endpoints = pickable(endpoints);
  }

  pick(_req: RequestView, exclude?: ReadonlySet<string>): E | undefined {
    const from = allowedEndpoints(this.endpoints, exclude);
    const n = from.length;
    if (n <= 1) return from[0];
    let best = from[Math.floor(this.random() * n)] as E;
    for (let i = 1; i < this.choiceCount; i++) {
      const e = from[Math.floor(this.random() * n)] as E;
      if (e.active < best.active) best = e;
    }
    return best;
  }
}
