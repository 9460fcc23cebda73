import 'reflect-metadata';
import { jetstream } from '@nats-io/jetstream';
import { NestFactory } from '@nestjs/core';
import type { MicroserviceOptions } from '@nestjs/microservices';
import { connectBus, drainBus, provisionDiscovery, publishDeadLetter, REGISTRY_MAX_DELIVER } from '@novamesh/bus';
import { JetStreamServer, NestPinoLogger, PassThroughRpcFilter } from '@novamesh/bus/nest';
import { consumers, queueGroups, streams } from '@novamesh/contracts';
import { createLogger, onShutdown, setupTelemetry, watchEventLoop } from '@novamesh/observability';
import { createRedis, HealthStore } from '@novamesh/state';
import { ConfigError, loadConfig } from './config';
import { DiscoveryModule } from './discovery.module';
import { EndpointsViewService } from './endpoints-view.service';
import { HealthCheckerService } from './health-checker.service';
import { MembershipService } from './membership.service';
import { RegistryService } from './registry.service';
import { SweeperService } from './sweeper.service';

/** The whole life of a discovery replica: config → logger → NATS/Redis → Nest → ready → drain. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (e) {
    process.stderr.write(`discovery: ${(e as ConfigError).message}\n`);
    process.exit(78);
  }
  const logger = createLogger({ service: 'discovery', instance: config.instance, level: config.logLevel });
  watchEventLoop(logger);
  setupTelemetry({ service: 'discovery', instance: config.instance, otlpEndpoint: config.otlpEndpoint });

  const nc = await connectBus({
    servers: config.natsUrl,
    name: `discovery-${config.instance}`,
    logger,
    waitOnFirstConnect: true,
    noAsyncTraces: true,
  });
  const { kv } = await provisionDiscovery(nc, { replicas: config.replicas });
  const js = jetstream(nc);
  const redis = createRedis(config.redisUrl, `discovery-${config.instance}`);
  redis.on('error', (err) => logger.debug({ err: err.message }, 'redis connection error'));
  const health = new HealthStore(redis);

  const app = await NestFactory.createMicroservice<MicroserviceOptions>(DiscoveryModule.forRoot({ config, nc, js, kv, health, logger }), {
    strategy: new JetStreamServer({
      nc,
      js,
      durables: [
        {
          stream: streams.registry,
          durable: consumers.discoveryRegistry,
          maxDeliver: REGISTRY_MAX_DELIVER,
          maxInFlight: config.maxInFlight,
        },
      ],
      queueGroup: queueGroups.discovery,
      deadLetter: (msg, err) => publishDeadLetter(js, 'registry', msg, err, `discovery/${config.instance}`),
      prepare: async () => {
        await provisionDiscovery(nc, { replicas: config.replicas });
      },
      logger: logger.child({ component: 'transport' }),
    }),
    logger: new NestPinoLogger(logger),
  });
  app.useGlobalFilters(new PassThroughRpcFilter());

  // Views first, so handlers and timers see the current registry before any event is applied.
  await app.get(RegistryService).start();
  await app.get(EndpointsViewService).start();
  await app.get(MembershipService).start();
  await app.listen();
  app.get(SweeperService).start();
  app.get(HealthCheckerService).start();
  logger.info({ nats: config.natsUrl, redis: config.redisUrl.replace(/\/\/[^@]*@/, '//***@') }, 'discovery ready');

  onShutdown(logger, async () => {
    app.get(SweeperService).stop();
    app.get(HealthCheckerService).stop();
    await app.close(); // stops pulling; in-flight events finish and are acked
    await app.get(MembershipService).stop();
    app.get(RegistryService).stop();
    await app.get(EndpointsViewService).stop();
    await drainBus(nc);
    redis.disconnect();
  });
}

main().catch((err) => {
  process.stderr.write(`discovery: failed to start: ${err?.stack ?? err}\n`);
  process.exit(1);
});
