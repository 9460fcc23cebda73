import { Inject, Injectable } from '@nestjs/common';
import { activeEndpointIds, applySweep, hashEndpointSet, isLive, type ServiceRecord } from '@novamesh/discovery';
import type { Logger } from '@novamesh/observability';
import type { HealthStore } from '@novamesh/state';
import type { DiscoveryConfig } from './config';
import { EndpointsViewService } from './endpoints-view.service';
import { MembershipService } from './membership.service';
import { RegistryService } from './registry.service';
import { CONFIG, HEALTH_STORE, LOGGER } from './tokens';

/**
 * Time-driven registry changes, each service handled by the replica that owns it: heartbeat
 * TTLs (unhealthy, then removed), finished drains, tombstone pruning. On its first pass, when
 * replicas come or go, when the endpoints stream was created again, and every reconcile interval it
 * also republishes any set whose publication was lost (a crash between store and publish, NATS
 * dropping a fire-and-forget publish, a stream deleted and created again).
 * Pauses TTL expiry while Redis is unreachable: no heartbeat data is not a dead endpoint.
 */
@Injectable()
export class SweeperService {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private lastReconcile = 0;
  private reconciledGeneration = -1;
  private reconciledResets = 0;
  private reconciledUnreadable = 0;
  private readonly log: Logger;

  constructor(
    private readonly registry: RegistryService,
    private readonly membership: MembershipService,
    private readonly view: EndpointsViewService,
    @Inject(HEALTH_STORE) private readonly health: HealthStore,
    @Inject(CONFIG) private readonly cfg: DiscoveryConfig,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'sweeper' });
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.cfg.sweepIntervalMs);
    void this.tick();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      // Reconcile on start, periodically, whenever replicas come or go (a new owner must check
      // the services it just took over: their previous owner may have died mid-publish) and when
      // the endpoints stream was created again (it lost every set).
      const generation = this.membership.generation;
      const resets = this.view.resets;
      const unreadable = this.view.unreadable;
      const reconcile =
        generation !== this.reconciledGeneration ||
        resets !== this.reconciledResets ||
        unreadable !== this.reconciledUnreadable ||
        Date.now() - this.lastReconcile >= this.cfg.reconcileIntervalMs;
      if (reconcile) {
        this.lastReconcile = Date.now();
        this.reconciledGeneration = generation;
        this.reconciledResets = resets;
        this.reconciledUnreadable = unreadable;
      }
      let republished = 0;
      for (const [name, { record }] of this.registry.entries()) {
        if (!reconcile && !this.timeMatters(record)) continue; // most services: nothing time-driven
        if (!this.membership.owns(`service/${name}`)) continue;
        try {
          if (reconcile && this.needsRepublish(name, record)) {
            this.log.debug({ meshService: name }, 'republishing endpoint set missing from the stream');
            await this.registry.mutate(name, () => ({ kind: 'unchanged', why: 'no-op' }), { forcePublish: true });
            republished++;
            continue;
          }
          if (!this.timeMatters(record)) continue;
          let heartbeats: Map<string, number> | undefined;
          if (record.spec.heartbeat && isLive(record)) {
            try {
              heartbeats = await this.health.heartbeats(name, activeEndpointIds(record), Date.now());
            } catch {
              continue; // Redis down: do not expire anything on missing data
            }
          }
          await this.registry.mutate(name, (cur) => (cur ? applySweep(cur, Date.now(), heartbeats) : { kind: 'unchanged', why: 'no-op' }));
        } catch (err) {
          this.log.warn({ err, meshService: name }, 'sweep failed; will retry');
        }
      }
      // Sets carried over a stream reset for services nobody will republish (not in the registry,
      // or never published) stop answering queries: every replica then answers the same.
      if (reconcile) {
        // One line for the whole reconcile (after a stream reset that is every service), each one at debug.
        if (republished) this.log.info({ services: republished }, 'republished endpoint sets missing from the stream');
        const published = new Set<string>();
        for (const [name, { record }] of this.registry.entries()) if (record.published) published.add(name);
        this.view.forgetCarried((name) => !published.has(name));
      }
    } finally {
      this.running = false;
    }
  }

  private timeMatters(r: ServiceRecord): boolean {
    if (r.spec.heartbeat && isLive(r)) return true;
    if (r.drainUntil !== undefined) return true;
    return Object.values(r.endpoints).some((e) => e.drainUntil !== undefined || e.removedAt !== undefined);
  }

  /** True when the stream does not hold the set the registry says was published. */
  private needsRepublish(name: string, record: ServiceRecord): boolean {
    if (!record.published) return false;
    const last = this.view.stored(name);
    return !last || hashEndpointSet(last) !== record.published.hash;
  }
}
