import type { ProxySnapshotV1 } from '@novamesh/contracts';
import {
  compileAuthorizer,
  compileRateLimits,
  compileUpstreamRoutes,
  type GlobalRateLimitStore,
  type RateLimiter,
  type RouteTable,
} from '@novamesh/dataplane';
import type { IdentityHolder } from './identity-holder';
import type { InboundPolicy } from './inbound';
import { UpstreamRuntime } from './upstream-runtime';

/**
 * The live data plane compiled from the snapshot in use: the inbound policy and one runtime per
 * upstream. `apply` compiles everything first and swaps only when all of it compiled, so a
 * snapshot that cannot be applied changes nothing (the store then reports the reason).
 */
export class DataPlane {
  private runtimes: Map<string, UpstreamRuntime> | undefined;
  private policy: InboundPolicy | undefined;
  /** The rate limits in use and the JSON they were compiled from: kept (with their buckets) while it stays the same. */
  private rateLimits: { json: string; limiter: RateLimiter | undefined } = { json: '[]', limiter: undefined };

  constructor(
    private readonly deps: {
      identity: IdentityHolder;
      locality?: string;
      onEjected: (service: string, ids: string[]) => void;
      /** Where global rate limits are counted; called only when a snapshot has one. */
      rateLimitStore: () => GlobalRateLimitStore;
    },
  ) {}

  get upstreams(): ReadonlyMap<string, UpstreamRuntime> | undefined {
    return this.runtimes;
  }

  get inbound(): InboundPolicy | undefined {
    return this.policy;
  }

  apply(snapshot: ProxySnapshotV1): void {
    const authorizer = compileAuthorizer(snapshot.inbound.authorization);
    // Compiled once per change of the policies, not per snapshot: endpoint churn must not refill the buckets.
    const limitsJson = JSON.stringify(snapshot.inbound.rateLimits);
    const rateLimits =
      limitsJson === this.rateLimits.json
        ? this.rateLimits
        : { json: limitsJson, limiter: compileRateLimits(snapshot.inbound.rateLimits, { store: this.deps.rateLimitStore }) };
    // Compile every route table before touching anything: a regex that does not compile refuses the whole snapshot.
    const routes = snapshot.upstreams.map((up) => {
      try {
        return compileUpstreamRoutes(up);
      } catch (e) {
        throw new Error(`upstreams[${up.service}].routes: ${(e as Error).message}`);
      }
    });
    const next = new Map<string, UpstreamRuntime>();
    snapshot.upstreams.forEach((up, i) => {
      const table = routes[i] as RouteTable;
      const existing = this.runtimes?.get(up.service);
      if (existing) {
        existing.update(up, table);
        next.set(up.service, existing);
      } else next.set(up.service, new UpstreamRuntime(up, table, this.deps));
    });
    for (const [name, rt] of this.runtimes ?? []) if (!next.has(name)) rt.close();
    this.runtimes = next;
    this.rateLimits = rateLimits;
    this.policy = { mode: snapshot.inbound.mtls.mode, authorizer, rateLimits: rateLimits.limiter };
    this.deps.identity.setRevoked(snapshot.trust?.revokedSerials ?? []);
  }

  close(): void {
    for (const rt of this.runtimes?.values() ?? []) rt.close();
  }
}
