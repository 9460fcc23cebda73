import { type EndpointStatus, LOCALITY_LABEL, type LoadBalancing, type Subset } from '@novamesh/contracts';
import type { Balancer, BalancerOptions, LbEndpoint } from './balancer';
import { createBalancer } from './create-balancer';
import type { RequestView } from './request-view';

/** An upstream endpoint with its registry status: a snapshot endpoint plus the caller's `active` count. */
export interface PoolEndpoint extends LbEndpoint {
  status: EndpointStatus;
}

export interface SelectEndpointsOptions {
  /** A subset's labels: every one must be on the endpoint. */
  subsetLabels?: Record<string, string>;
  /** The caller's zone; endpoints labelled with it (LOCALITY_LABEL) are preferred. */
  locality?: string;
  /** Endpoints passive outlier detection took out. */
  ejected?: (id: string) => boolean;
}

/**
 * The endpoints that may get new requests: `healthy`, not ejected, carrying the subset's labels;
 * of those only the caller's zone when at least one is there (Envoy/Istio locality failover),
 * else all. Returns `endpoints` itself when nothing is filtered out, a fresh array otherwise.
 */
export function selectEndpoints<E extends PoolEndpoint>(endpoints: readonly E[], opts: SelectEndpointsOptions = {}): readonly E[] {
  const { ejected, locality } = opts;
  const required = opts.subsetLabels ? Object.entries(opts.subsetLabels) : [];
  let eligible: E[] | undefined;
  let local = 0;
  for (let i = 0; i < endpoints.length; i++) {
    const e = endpoints[i] as E;
    const ok = e.status === 'healthy' && !ejected?.(e.id) && required.every(([k, v]) => e.labels[k] === v);
    if (!ok) {
      eligible ??= endpoints.slice(0, i);
      continue;
    }
    eligible?.push(e);
    if (locality !== undefined && e.labels[LOCALITY_LABEL] === locality) local++;
  }
  const all = eligible ?? endpoints;
  return local > 0 && local < all.length ? all.filter((e) => e.labels[LOCALITY_LABEL] === locality) : all;
}

/** Where ejections come from (an OutlierDetector); `version` changes whenever an endpoint is ejected or returns. */
export interface EjectionSource {
  isEjected(id: string): boolean;
  readonly version: number;
}

export interface EndpointPoolOptions extends BalancerOptions {
  locality?: string;
  ejections?: EjectionSource;
}

interface CachedBalancer<E extends LbEndpoint> {
  generation: number;
  ejectionVersion: number;
  eligible: readonly E[];
  balancer: Balancer<E>;
}

/**
 * One upstream's endpoints with a balancer per subset, built lazily and rebuilt only when the
 * subset's eligible set changes (health, ejections, membership). A request costs two integer
 * comparisons and a map lookup in the steady state. Owns its balancers; single-threaded use.
 */
export class EndpointPool<E extends PoolEndpoint> {
  private readonly subsets: Map<string, Record<string, string>>;
  private readonly cache = new Map<string, CachedBalancer<E>>();
  private generation = 0;

  constructor(
    private readonly lb: LoadBalancing,
    subsets: readonly Subset[],
    private endpoints: readonly E[],
    private readonly opts: EndpointPoolOptions = {},
  ) {
    this.subsets = new Map(subsets.map((s) => [s.name, s.labels]));
  }

  /** Replaces the endpoint set (a new snapshot or endpoint revision). */
  setEndpoints(endpoints: readonly E[]): void {
    this.endpoints = endpoints;
    this.generation++;
  }

  /** Call after changing an endpoint's `status` or labels in place. */
  invalidate(): void {
    this.generation++;
  }

  /** The balancer of a subset (undefined: every endpoint). An unknown subset has no endpoints. */
  balancer(subset?: string): Balancer<E> {
    const key = subset ?? '';
    const ejectionVersion = this.opts.ejections?.version ?? 0;
    const cached = this.cache.get(key);
    if (cached && cached.generation === this.generation && cached.ejectionVersion === ejectionVersion) return cached.balancer;
    const eligible = this.eligible(subset);
    // Read again: asking isEjected may have returned endpoints whose time was up (already reflected above).
    const seen = this.opts.ejections?.version ?? 0;
    if (cached && sameMembers(cached.eligible, eligible)) {
      // Same set: keep the balancer, and with it round-robin position and built tables.
      cached.generation = this.generation;
      cached.ejectionVersion = seen;
      return cached.balancer;
    }
    const balancer = createBalancer(this.lb, eligible, this.opts);
    this.cache.set(key, { generation: this.generation, ejectionVersion: seen, eligible, balancer });
    return balancer;
  }

  /** Shorthand: the subset's balancer picks for `req`. */
  pick(req: RequestView, subset?: string, exclude?: ReadonlySet<string>): E | undefined {
    return this.balancer(subset).pick(req, exclude);
  }

  private eligible(subset: string | undefined): readonly E[] {
    const subsetLabels = subset === undefined ? undefined : this.subsets.get(subset);
    if (subset !== undefined && !subsetLabels) return [];
    const ejections = this.opts.ejections;
    return selectEndpoints(this.endpoints, {
      subsetLabels,
      locality: this.opts.locality,
      ejected: ejections ? (id) => ejections.isEjected(id) : undefined,
    });
  }
}

function sameMembers<E>(a: readonly E[], b: readonly E[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
