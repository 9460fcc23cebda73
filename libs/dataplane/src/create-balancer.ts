import type { LoadBalancing } from '@novamesh/contracts';
import type { Balancer, BalancerOptions, LbEndpoint } from './balancer';
import { LeastRequestBalancer } from './least-request.balancer';
import { MaglevBalancer } from './maglev.balancer';
import { RandomBalancer } from './random.balancer';
import { compileHashKey } from './request-view';
import { RingHashBalancer } from './ring-hash.balancer';
import { RoundRobinBalancer } from './round-robin.balancer';
import { WeightedBalancer } from './weighted.balancer';

/**
 * The balancer a TrafficPolicy's `loadBalancing` asks for, over `endpoints` (kept by reference:
 * the caller may update their `active` counts, not the membership). Pays the build cost (ring,
 * maglev table) here, once per eligible endpoint set.
 */
export function createBalancer<E extends LbEndpoint>(lb: LoadBalancing, endpoints: readonly E[], opts: BalancerOptions = {}): Balancer<E> {
  const random = opts.random ?? Math.random;
  switch (lb.algorithm) {
    case 'round-robin':
      return new RoundRobinBalancer(endpoints, random);
    case 'least-request':
      return new LeastRequestBalancer(endpoints, lb.choiceCount, random);
    case 'random':
      return new RandomBalancer(endpoints, random);
    case 'weighted':
      return new WeightedBalancer(endpoints);
    case 'ring-hash':
      return new RingHashBalancer(endpoints, compileHashKey(lb.hashKey), lb, random);
    case 'maglev':
      return new MaglevBalancer(endpoints, compileHashKey(lb.hashKey), lb.tableSize, random);
  }
}
