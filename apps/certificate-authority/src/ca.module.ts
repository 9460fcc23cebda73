import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { type DynamicModule, Module } from '@nestjs/common';
import type { LoadedCa } from '@novamesh/ca';
import type { CaInfoResultV1 } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { CaController } from './ca.controller';
import { CertPruneService } from './cert-prune.service';
import { CertRegistryService } from './cert-registry.service';
import { JoinTokensService } from './join-tokens.service';
import type { CaMetrics } from './metrics';
import { RootRotationService } from './root-rotation.service';
import { RotationLock } from './rotation-lock';
import { SigningService } from './signing.service';
import {
  CA_INFO,
  CA_SETTINGS,
  type CaSettings,
  CERTS_KV,
  JETSTREAM,
  JETSTREAM_MANAGER,
  LOADED_CA,
  LOGGER,
  METRICS,
  TOKENS_KV,
} from './tokens';
import { TrustPublisherService } from './trust-publisher.service';

export interface CaInfra {
  js: JetStreamClient;
  jsm: JetStreamManager;
  tokens: KV;
  certs: KV;
  ca: LoadedCa;
  settings: CaSettings;
  logger: Logger;
  metrics: CaMetrics;
  info: Omit<CaInfoResultV1, 'ok'>;
}

@Module({})
export class CaModule {
  static forRoot(infra: CaInfra): DynamicModule {
    return {
      module: CaModule,
      controllers: [CaController],
      providers: [
        { provide: JETSTREAM, useValue: infra.js },
        { provide: JETSTREAM_MANAGER, useValue: infra.jsm },
        { provide: TOKENS_KV, useValue: infra.tokens },
        { provide: CERTS_KV, useValue: infra.certs },
        { provide: LOADED_CA, useValue: infra.ca },
        { provide: CA_SETTINGS, useValue: infra.settings },
        { provide: LOGGER, useValue: infra.logger },
        { provide: METRICS, useValue: infra.metrics },
        { provide: CA_INFO, useValue: infra.info },
        JoinTokensService,
        CertRegistryService,
        TrustPublisherService,
        SigningService,
        RotationLock,
        RootRotationService,
        CertPruneService,
      ],
    };
  }
}
