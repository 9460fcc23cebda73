import 'reflect-metadata';
import { jetstream } from '@nats-io/jetstream';
import { NestFactory } from '@nestjs/core';
import type { MicroserviceOptions } from '@nestjs/microservices';
import { connectBus, drainBus, provisionProxyConfig } from '@novamesh/bus';
import { JetStreamServer, NestPinoLogger, PassThroughRpcFilter } from '@novamesh/bus/nest';
import { queueGroups } from '@novamesh/contracts';
import { createLogger, onShutdown, setupTelemetry, watchEventLoop } from '@novamesh/observability';
import { type ConfigError, loadConfig } from './config';
import { ProxyConfigModule } from './proxy-config.module';
import { PublishedSnapshotsService } from './published-snapshots.service';
import { SidecarStatusService } from './sidecar-status.service';
import { SnapshotBuilderService } from './snapshot-builder.service';

/** The whole life of a proxy-config replica: config → logger → NATS → Nest → load inputs → ready → drain. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (e) {
    process.stderr.write(`proxy-config: ${(e as ConfigError).message}\n`);
    process.exit(78);
  }
  const logger = createLogger({ service: 'proxy-config', instance: config.instance, level: config.logLevel });
  watchEventLoop(logger);
  setupTelemetry({ service: 'proxy-config', instance: config.instance, otlpEndpoint: config.otlpEndpoint });

  // No stack trace captured per request: a snapshot publish is one, and a flush makes hundreds.
  const nc = await connectBus({
    servers: config.natsUrl,
    name: `proxy-config-${config.instance}`,
    logger,
    waitOnFirstConnect: true,
    noAsyncTraces: true,
  });
  const { jsm } = await provisionProxyConfig(nc, { replicas: config.replicas });
  const js = jetstream(nc);

  const app = await NestFactory.createMicroservice<MicroserviceOptions>(ProxyConfigModule.forRoot({ nc, js, jsm, config, logger }), {
    strategy: JetStreamServer.requestReply({
      nc,
      js,
      queueGroup: queueGroups.proxyConfig,
      logger: logger.child({ component: 'transport' }),
    }),
    logger: new NestPinoLogger(logger),
  });
  app.useGlobalFilters(new PassThroughRpcFilter());

  // Acks first (sidecars report every 10 s), then what was published (versions survive restarts),
  // then the inputs; the builder publishes only once all of them are loaded.
  app.get(SidecarStatusService).start();
  await app.get(PublishedSnapshotsService).start();
  await app.get(SnapshotBuilderService).start();
  await app.listen();
  logger.info(
    { nats: config.natsUrl, debounceMs: config.debounceMs, maxDelayMs: config.maxDelayMs, maxInFlight: config.maxInFlight },
    'proxy-config ready',
  );

  onShutdown(logger, async () => {
    await app.close();
    await app.get(SnapshotBuilderService).stop();
    app.get(SidecarStatusService).stop();
    await app.get(PublishedSnapshotsService).stop();
    await drainBus(nc);
  });
}

main().catch((err) => {
  process.stderr.write(`proxy-config: failed to start: ${err?.stack ?? err}\n`);
  process.exit(1);
});
