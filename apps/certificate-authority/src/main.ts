import 'reflect-metadata';
import { jetstream } from '@nats-io/jetstream';
import { NestFactory } from '@nestjs/core';
import type { MicroserviceOptions } from '@nestjs/microservices';
import { connectBus, drainBus, provisionCa } from '@novamesh/bus';
import { JetStreamServer, NestPinoLogger, PassThroughRpcFilter } from '@novamesh/bus/nest';
import { certificateInfo, loadOrCreateCa } from '@novamesh/ca';
import { queueGroups } from '@novamesh/contracts';
import { createLogger, onShutdown, setupTelemetry, watchEventLoop } from '@novamesh/observability';
import { CaModule } from './ca.module';
import { CertPruneService, serialsToList } from './cert-prune.service';
import { CertRegistryService } from './cert-registry.service';
import { type ConfigError, loadConfig } from './config';
import { CaMetrics, startMetricsServer } from './metrics';
import { describeCa, RootRotationService } from './root-rotation.service';
import { TrustPublisherService } from './trust-publisher.service';

/** The whole life of a CA replica: config → logger → CA files → NATS → Nest → bundle → ready → drain. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (e) {
    process.stderr.write(`certificate-authority: ${(e as ConfigError).message}\n`);
    process.exit(78);
  }
  const logger = createLogger({ service: 'certificate-authority', instance: config.instance, level: config.logLevel });
  watchEventLoop(logger);
  setupTelemetry({ service: 'certificate-authority', instance: config.instance, otlpEndpoint: config.otlpEndpoint });

  // Keys are written 0600 (encrypted when CA_PASSPHRASE is set) and stay in this process's memory.
  const ca = await loadOrCreateCa({
    dir: config.caDir,
    trustDomain: config.trustDomain,
    ...(config.passphrase ? { passphrase: config.passphrase } : {}),
  });
  const root = certificateInfo(ca.root.certPem);
  const intermediate = certificateInfo(ca.intermediate.certPem);
  logger.info(
    {
      caDir: config.caDir,
      created: ca.created,
      keysEncrypted: config.passphrase !== undefined,
      root: { fingerprint256: root.fingerprint256, notAfter: new Date(root.notAfter).toISOString() },
      ...(ca.previous ? { rotatingOutRoot: certificateInfo(ca.previous.rootPem).fingerprint256 } : {}),
      intermediate: { fingerprint256: intermediate.fingerprint256, notAfter: new Date(intermediate.notAfter).toISOString() },
    },
    ca.created ? 'CA created' : 'CA loaded',
  );

  const metrics = new CaMetrics(ca);
  // Metrics are an aid, not a duty: a listener that cannot bind is logged, and the CA serves on.
  const metricsServer = await startMetricsServer(metrics, config.metricsHost, config.metricsPort).then(
    (m) => {
      logger.info({ host: config.metricsHost, port: m.port }, `metrics on http://${hostPort(config.metricsHost, m.port)}/metrics`);
      return m.server;
    },
    (e: unknown) => {
      logger.error({ host: config.metricsHost, port: config.metricsPort, err: (e as Error).message }, 'metrics endpoint not started');
      return undefined;
    },
  );

  const nc = await connectBus({
    servers: config.natsUrl,
    name: `certificate-authority-${config.instance}`,
    logger,
    waitOnFirstConnect: true,
  });
  const { jsm, tokens, certs } = await provisionCa(nc, { replicas: config.replicas });
  const js = jetstream(nc);

  const app = await NestFactory.createMicroservice<MicroserviceOptions>(
    CaModule.forRoot({
      js,
      jsm,
      tokens,
      certs,
      ca,
      settings: {
        trustDomain: config.trustDomain,
        certTtlMs: config.certTtlMs,
        caDir: config.caDir,
        ...(config.passphrase ? { passphrase: config.passphrase } : {}),
        instance: config.instance,
        prune: { intervalMs: config.pruneIntervalMs, retentionMs: config.expiredCertRetentionMs },
        streamRecheckMs: config.streamRecheckMs,
        replicas: config.replicas,
      },
      logger,
      metrics,
      info: {
        trustDomain: config.trustDomain,
        root: describeCa(root),
        intermediate: describeCa(intermediate),
        certTtlMs: config.certTtlMs,
        instance: config.instance,
      },
    }),
    {
      strategy: JetStreamServer.requestReply({
        nc,
        js,
        queueGroup: queueGroups.certificateAuthority,
        logger: logger.child({ component: 'transport' }),
      }),
      logger: new NestPinoLogger(logger),
    },
  );
  app.useGlobalFilters(new PassThroughRpcFilter());

  // Every revoked certificate not yet expired is on the revocation list (which is rebuilt from the
  // certificate records when the stream lost it); the bundle is published when it changed.
  const revoked = serialsToList(await app.get(CertRegistryService).entries(), Date.now());
  await app.get(TrustPublisherService).start(config.trustDomain, revoked);
  // A root rotation handled by another replica reaches this one through the trust bundle.
  await app.get(RootRotationService).follow();
  // Expired serials leave the revocation list, expired records the bucket: now, then periodically.
  app.get(CertPruneService).start();
  await app.listen();
  logger.info({ nats: config.natsUrl, trustDomain: config.trustDomain }, 'certificate-authority ready');

  onShutdown(logger, async () => {
    await app.close();
    await drainBus(nc);
    metricsServer?.closeAllConnections();
    await new Promise((r) => (metricsServer ? metricsServer.close(r) : r(undefined)));
  });
}

const hostPort = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

main().catch((err) => {
  // MeshErrors from the CA library name files and reasons, never key material or the passphrase.
  process.stderr.write(`certificate-authority: failed to start: ${err?.stack ?? err}\n`);
  process.exit(1);
});
