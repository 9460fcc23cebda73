import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { Inject, Injectable } from '@nestjs/common';
import { ProxyAckV1, type ProxyStatusEntryV1, subjects } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { SidecarStatusBook } from '@novamesh/proxy-config';
import type { ProxyConfigConfig } from './config';
import { readInput } from './inbound';
import { PublishedSnapshotsService } from './published-snapshots.service';
import { CONFIG, LOGGER, NATS } from './tokens';

/**
 * Sidecar acknowledgements, heard by every replica (plain subscription, no queue group), so any
 * replica can answer `mesh.v1.proxy.status`. Snapshot versions come from the MESH_PROXY stream, so
 * the lag of a sidecar counts from when the first version it lacks was published, by any replica.
 */
@Injectable()
export class SidecarStatusService {
  private readonly book: SidecarStatusBook;
  private sub: Subscription | undefined;
  private readonly log: Logger;

  constructor(
    @Inject(NATS) private readonly nc: NatsConnection,
    @Inject(CONFIG) config: ProxyConfigConfig,
    @Inject(LOGGER) logger: Logger,
    published: PublishedSnapshotsService,
  ) {
    this.log = logger.child({ component: 'sidecar-status' });
    this.book = new SidecarStatusBook({ staleAfterMs: config.staleAfterMs });
    published.onSnapshot((s) => this.book.recordSnapshot(s.service, s.version, s.hash, s.createdAt, Date.now()));
  }

  start(): void {
    this.sub = this.nc.subscribe(subjects.proxyAckAll, {
      callback: (err, msg) => {
        if (err) return;
        const ack = readInput(this.log, ProxyAckV1, 'proxy ack', msg);
        if (!ack) return;
        const expected = `${subjects.proxyAckAll.slice(0, -1)}${ack.service}.${ack.sidecar}`;
        if (msg.subject !== expected) {
          this.log.warn({ subject: msg.subject, expected }, 'proxy ack published on another sidecar’s subject skipped');
          return;
        }
        this.book.recordAck(ack, Date.now());
      },
    });
  }

  /** Every known sidecar, or those of one service, with its sync state now. */
  entries(service?: string): ProxyStatusEntryV1[] {
    return this.book.entries(Date.now(), service);
  }

  stop(): void {
    this.sub?.unsubscribe();
  }
}
