import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { type DynamicModule, Module } from '@nestjs/common';
import type { Logger } from '@novamesh/observability';
import type { ProxyConfigConfig } from './config';
import { ProxyStatusController } from './proxy-status.controller';
import { PUBLISHED_SNAPSHOTS_OPTIONS, PublishedSnapshotsService } from './published-snapshots.service';
import { SidecarStatusService } from './sidecar-status.service';
import { SnapshotBuilderService } from './snapshot-builder.service';
import { CONFIG, JETSTREAM, JETSTREAM_MANAGER, LOGGER, NATS } from './tokens';

export interface ProxyConfigInfra {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  config: Readonly<ProxyConfigConfig>;
  logger: Logger;
}

@Module({})
export class ProxyConfigModule {
  static forRoot(infra: ProxyConfigInfra): DynamicModule {
    return {
      module: ProxyConfigModule,
      controllers: [ProxyStatusController],
      providers: [
        { provide: NATS, useValue: infra.nc },
        { provide: JETSTREAM, useValue: infra.js },
        { provide: JETSTREAM_MANAGER, useValue: infra.jsm },
        { provide: CONFIG, useValue: infra.config },
        { provide: LOGGER, useValue: infra.logger },
        {
          provide: PUBLISHED_SNAPSHOTS_OPTIONS,
          useValue: { replicas: infra.config.replicas, streamRecheckMs: infra.config.streamRecheckMs },
        },
        PublishedSnapshotsService,
        SnapshotBuilderService,
        SidecarStatusService,
      ],
    };
  }
}
