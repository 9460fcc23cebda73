import { Inject, Injectable } from '@nestjs/common';
import { ownerOf } from '@novamesh/discovery';
import type { Logger } from '@novamesh/observability';
import type { HealthStore } from '@novamesh/state';
import type { DiscoveryConfig } from './config';
import { CONFIG, HEALTH_STORE, LOGGER } from './tokens';

const GROUP = 'discovery';

/**
 * Which discovery replicas are alive (a sorted set in Redis, touched every third of the member
 * TTL) and which of them owns a key (rendezvous hashing). While Redis is unreachable the last
 * known membership stays in force, so work neither stops nor doubles.
 */
@Injectable()
export class MembershipService {
  private members: string[];
  private changes = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(
    @Inject(HEALTH_STORE) private readonly store: HealthStore,
    @Inject(CONFIG) private readonly cfg: DiscoveryConfig,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.members = [cfg.instance];
    this.log = logger.child({ component: 'membership' });
  }

  get self(): string {
    return this.cfg.instance;
  }

  async start(): Promise<void> {
    await this.touch();
    this.timer = setInterval(() => void this.touch(), Math.max(100, Math.floor(this.cfg.memberTtlMs / 3)));
  }

  private async touch(): Promise<void> {
    try {
      const live = await this.store.touchMember(GROUP, this.cfg.instance, Date.now(), this.cfg.memberTtlMs);
      if (!live.includes(this.cfg.instance)) live.push(this.cfg.instance);
      live.sort();
      if (live.join() !== this.members.join()) {
        this.log.info({ members: live }, 'discovery replicas changed');
        this.changes++;
      }
      this.members = live;
    } catch (err) {
      this.log.debug({ err }, 'membership not refreshed: health store unavailable');
    }
  }

  /** Grows every time the set of live replicas changes (ownership of keys may have moved). */
  get generation(): number {
    return this.changes;
  }

  owns(key: string): boolean {
    return ownerOf(key, this.members) === this.cfg.instance;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.store.leave(GROUP, this.cfg.instance).catch(() => undefined);
  }
}
