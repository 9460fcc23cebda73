import { Inject, Injectable } from '@nestjs/common';
import { type HealthCheck } from '@novamesh/contracts';
import { isActive, isLive, type ProbeResult, probeHttp, probeTcp } from '@novamesh/discovery';
import type { Logger } from '@novamesh/observability';
import type { HealthStore } from '@novamesh/state';
import { MembershipService } from './membership.service';
import { RegistryService } from './registry.service';
import { HEALTH_STORE, LOGGER } from './tokens';

const TICK_MS = 50;
const MAX_CONCURRENT_PROBES = 256;

/**
 * Active health checks (HTTP path or TCP connect), shared among replicas: each endpoint is
 * owned by one replica (rendezvous hashing over live replicas), and a Redis claim per endpoint
 * and interval slot guarantees a single check per interval even while ownership moves. Results
 * fold into Redis with thresholds; a status change republishes the service's endpoint set.
 */
@Injectable()
export class HealthCheckerService {
  private timer: NodeJS.Timeout | undefined;
  private readonly lastSlot = new Map<string, number>();
  private inFlight = 0;
  private readonly log: Logger;

  constructor(
    private readonly registry: RegistryService,
    private readonly membership: MembershipService,
    @Inject(HEALTH_STORE) private readonly health: HealthStore,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'health-checker' });
  }

  start(): void {
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private tick(): void {
    const now = Date.now();
    for (const name of this.registry.checkedServices()) {
      const record = this.registry.get(name);
      const hc = record?.spec.healthCheck;
      if (!record || !hc || !isLive(record) || record.drainUntil !== undefined) continue;
      const slot = Math.floor(now / hc.interval);
      for (const [id, entry] of Object.entries(record.endpoints)) {
        if (!isActive(entry) || entry.drainUntil !== undefined) continue;
        const key = `${name}/${id}`;
        if (this.lastSlot.get(key) === slot) continue;
        if (this.inFlight >= MAX_CONCURRENT_PROBES) return;
        this.lastSlot.set(key, slot);
        if (!this.membership.owns(`endpoint/${key}`)) continue;
        this.inFlight++;
        void this.check(name, id, entry.endpoint.address, entry.endpoint.port, hc, slot).finally(() => {
          this.inFlight--;
        });
      }
    }
  }

  private async check(service: string, id: string, address: string, port: number, hc: HealthCheck, slot: number): Promise<void> {
    try {
      if (!(await this.health.claimCheck(service, id, slot, this.membership.self, hc.interval))) return;
      const result: ProbeResult =
        hc.protocol === 'http' ? await probeHttp(address, port, hc.path ?? '/', hc.timeout) : await probeTcp(address, port, hc.timeout);
      const { status, changed } = await this.health.recordCheck(service, id, {
        ok: result.ok,
        detail: result.detail,
        healthyThreshold: hc.healthyThreshold,
        unhealthyThreshold: hc.unhealthyThreshold,
        now: Date.now(),
        by: this.membership.self,
      });
      if (changed) {
        this.log.info({ meshService: service, endpoint: id, status, detail: result.detail }, 'endpoint health changed');
        await this.registry.refresh(service);
      }
    } catch (err) {
      this.log.debug({ err, meshService: service, endpoint: id }, 'health check skipped: health store unavailable');
    }
  }
}
