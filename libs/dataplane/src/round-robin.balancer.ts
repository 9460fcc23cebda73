import { type Balancer, type LbEndpoint, pickable } from './balancer';
import type { RequestView } from './request-view';

/**
 * Round robin: each endpoint in turn, starting at a random one so that sidecars started
 * together do not all begin with the same endpoint. Owns its cursor.
 */
export class RoundRobinBalancer<E extends LbEndpoint> implements Balancer<E> {
  readonly algorithm = 'round-robin' as const;
  readonly endpoints: readonly E[];
  private next: number;

  constructor(endpoints: readonly E[], random: () => number = Math.random) {
    this.endpoints = pickable(endpoints);
    this.next = Math.floor(random() * this.endpoints.length);
  }

  pick(_req: RequestView, exclude?: ReadonlySet<string>): E | undefined {
    const list = this.endpoints;
    const n = list.length;
    if (n === 0) return undefined;
    let i = this.next;
    // All excluded: the loop comes back to where it started, and that endpoint is retried.
    if (exclude && exclude.size > 0) for (let t = 0; t < n && exclude.has((list[i] as E).id); t++) i = i + 1 === n ? 0 : i + 1;
    this.next = i + 1 === n ? 0 : i + 1;
    return list[i];
  }
}
