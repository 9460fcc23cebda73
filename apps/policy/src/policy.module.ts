import type { JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { type DynamicModule, Module } from '@nestjs/common';
import type { Logger } from '@novamesh/observability';
import { EffectivePublisherService } from './effective-publisher.service';
import { PolicyController } from './policy.controller';
import { PolicyStoreService } from './policy-store.service';
import { ServicesViewService } from './services-view.service';
import { JETSTREAM, LOGGER, NATS, POLICIES_KV } from './tokens';

export interface PolicyInfra {
  nc: NatsConnection;
  js: JetStreamClient;
  kv: KV;
  logger: Logger;
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
        ServicesViewService,
        EffectivePublisherService,
        PolicyStoreService,
      ],
    };
  }
}
