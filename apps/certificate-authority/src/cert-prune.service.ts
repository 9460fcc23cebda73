import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import type { Logger } from '@novamesh/observability';
import { CertRegistryService, type StoredCertRecord } from './cert-registry.service';
import { CA_SETTINGS, type CaSettings, LOGGER } from './tokens';
import { TrustPublisherService } from './trust-publisher.service';

/**
 * A revoked serial stays on the revocation list this long after its certificate's notAfter: an
 * allowance for peers whose clock runs behind (the same as the 5-minute backdating of notBefore).
 */
export const LISTED_AFTER_EXPIRY_MS = 5 * 60_000;

export interface PrunePlan {
  /** Whether a serial of the revocation list stays on it: its certificate is known and not expired (with the allowance). */
  stayListed: (serial: string) => boolean;
  /** Records whose certificate expired more than the retention ago. */
  remove: StoredCertRecord[];
}

/**
 * What a prune at `now` changes, from the records of `mesh_ca_certs`. A serial whose record is gone
 * was pruned after its expiry (revocation needs a record), so it leaves the list too. Pure.
 */
export function planPrune(entries: readonly StoredCertRecord[], now: number, retentionMs: number): PrunePlan {
  const notAfter = new Map(entries.map((e) => [e.record.serial, Date.parse(e.record.notAfter)]));
  return {
    stayListed: (serial) => {
      const t = notAfter.get(serial);
      return t !== undefined && now <= t + LISTED_AFTER_EXPIRY_MS;
    },
    remove: entries.filter((e) => now > Date.parse(e.record.notAfter) + retentionMs),
  };
}

/**
 * The serials the revocation list must hold according to the records of `mesh_ca_certs`: every
 * revoked certificate not expired (with the allowance). What a list lost with its stream is
 * rebuilt from. Pure.
 */
export function serialsToList(entries: readonly StoredCertRecord[], now: number): string[] {
  return entries
    .filter((e) => e.record.state === 'revoked' && now <= Date.parse(e.record.notAfter) + LISTED_AFTER_EXPIRY_MS)
    .map((e) => e.record.serial)
    .sort();
}

/**
 * Keeps the CA's state small: removes expired certificates' serials from `mesh.v1.ca.revoked`
 * (a revoked certificate that expired is refused for being expired) and deletes certificate records
 * {@link CaSettings.prune} `retentionMs` after their notAfter. Runs at start and every `intervalMs`
 * (±10 %) on every replica: each step is idempotent and compare-and-set, so replicas pruning at the
 * same time agree. Runs never overlap within a replica.
 */
@Injectable()
export class CertPruneService implements OnModuleDestroy {
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;
  private stopped = false;

  constructor(
    private readonly certs: CertRegistryService,
    private readonly trust: TrustPublisherService,
    @Inject(CA_SETTINGS) private readonly settings: CaSettings,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'cert-prune' });
  }

  /** Prunes now (in the background) and then periodically. */
  start(): void {
    this.tick();
  }

  /** One prune at `now`: the list first, then the records (a crash in between leaves work for the next run). */
  async prune(now = Date.now()): Promise<{ unlisted: number; removed: number }> {
    const plan = planPrune(await this.certs.entries(), now, this.settings.prune.retentionMs);
    const unlisted = (await this.trust.pruneRevoked(plan.stayListed)).length;
    const removed = plan.remove.length ? await this.certs.remove(plan.remove) : 0;
    if (removed) this.log.info({ removed, retentionMs: this.settings.prune.retentionMs }, 'expired certificate records deleted');
    return { unlisted, removed };
  }

  async onModuleDestroy(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private tick(): void {
    if (this.stopped) return;
    this.running = this.prune()
      .catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'expired certificates not pruned; trying again later'))
      .finally(() => {
        if (this.stopped) return;
        const { intervalMs } = this.settings.prune;
        this.timer = setTimeout(() => this.tick(), intervalMs * (0.9 + Math.random() * 0.2));
        this.timer.unref();
      });
  }
}
