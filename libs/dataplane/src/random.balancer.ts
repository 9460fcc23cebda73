import { type Balancer, type LbEndpoint, pickable, randomPick } from './balancer';
import type { RequestView } from './request-view';

/** Uniformly random choice; stateless apart from the random source. */
export class RandomBalancer<E extends LbEndpoint> implements Balancer<E> {
  readonly algorithm = 'random' as const;
  readonly endpoints: readonly E[];

  constructor(
    endpoints: readonly E[],
    private readonly random: () => number = Math.random,
  ) {
    this.endpoints = pickable(endpoints);
  }

  pick(_req: RequestView, exclude?: ReadonlySet<string>): E | undefined {
    return randomPick(this.endpoints, exclude, this.random);
  }
}
