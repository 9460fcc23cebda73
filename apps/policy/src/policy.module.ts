import type { JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { type DynamicModule, Module } from '@nestjs/common';
import type { Logger } from '@novamesh/observability';
import { EFFECTIVE_PUBLISHER_OPTIONS, type EffectivePublisherOptions, EffectivePublisherService } from './effective-publisher.service';
import { PolicyController } from './policy.controller';
import { PolicyStoreService } from './policy-store.service';
import { ServicesViewService } from './services-view.service';
import { JETSTREAM, LOGGER, NATS, POLICIES_KV } from './tokens';

export interface PolicyInfra {
  nc: NatsConnection;
  js: JetStreamClient;
  kv: KV;
  logger: Logger;
  /** NATS_REPLICAS and POLICY_STREAM_RECHECK, for MESH_CONFIG (see EffectivePublisherOptions). */
  publisher: EffectivePublisherOptions;
}

@Module({})
export class PolicyModule {
  static forRoot(infra: PolicyInfra): DynamicModule {
    return {
      module: PolicyModule,
      controllers: [PolicyController],
      providers: [
        { provide: NATS, useValue: infra.nc },
        { provide: JETSTREAM, useValue: infra.js },
        { provide: POLICIES_KV, useValue: infra.kv },
        { provide: LOGGER, useValue: infra.logger },
        { provide: EFFECTIVE_PUBLISHER_OPTIONS, useValue: infra.publisher },
        ServicesViewService,
        EffectivePublisherService,
        PolicyStoreService,
      ],
    };
  }
}
