import type { JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { type DynamicModule, Module } from '@nestjs/common';
import type { Logger } from '@novamesh/observability';
import type { HealthStore } from '@novamesh/state';
import type { DiscoveryConfig } from './config';
import { EndpointsViewService } from './endpoints-view.service';
import { HealthCheckerService } from './health-checker.service';
import { MembershipService } from './membership.service';
import { QueryController } from './query.controller';
import { RegistryController } from './registry.controller';
import { RegistryService } from './registry.service';
import { SweeperService } from './sweeper.service';
import { CONFIG, HEALTH_STORE, JETSTREAM, LOGGER, NATS, SERVICES_KV } from './tokens';

export interface DiscoveryInfra {
  config: DiscoveryConfig;
  nc: NatsConnection;
  js: JetStreamClient;
  kv: KV;
  health: HealthStore;
  logger: Logger;
}

@Module({})
export class DiscoveryModule {
  static forRoot(infra: DiscoveryInfra): DynamicModule {
    return {
      module: DiscoveryModule,
      controllers: [RegistryController, QueryController],
      providers: [
        { provide: CONFIG, useValue: infra.config },
        { provide: NATS, useValue: infra.nc },
        { provide: JETSTREAM, useValue: infra.js },
        { provide: SERVICES_KV, useValue: infra.kv },
        { provide: HEALTH_STORE, useValue: infra.health },
        { provide: LOGGER, useValue: infra.logger },
        RegistryService,
        EndpointsViewService,
        MembershipService,
        SweeperService,
        HealthCheckerService,
      ],
    };
  }
}
