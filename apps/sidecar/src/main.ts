import type { CertificateClient } from '@novamesh/identity';
import { createLogger, onShutdown } from '@novamesh/observability';
import type { MeshManager } from '@novamesh/sdk';
import { AccessLog } from './access-log';
import { AdminServer } from './admin';
import { type ConfigError, loadConfig, type SidecarConfig } from './config';
import { ControlPlaneLink } from './control-plane';
import { DataPlane } from './data-plane';
import { IdentityHolder } from './identity-holder';
import { InFlightLimit } from './in-flight';
import { InboundListener } from './inbound';
import { SidecarMetrics } from './metrics';
import { OutboundProxy } from './outbound';
import { RedisRateLimits } from './rate-limit-redis';
import { checkDataDir, type OfferOutcome, SnapshotStore } from './snapshot-store';

/**
 * The whole life of a sidecar: config → logger → last good snapshot from disk → listeners (inbound,
 * outbound, admin) → ready → NATS in the background (snapshots, acknowledgements, registration,
 * certificate) → on SIGTERM: deregister, drain, close. Traffic never waits for the control plane.
 */
async function main(): Promise<void> {
  let config: Readonly<SidecarConfig>;
  try {
    config = loadConfig();
  } catch (e) {
    process.stderr.write(`sidecar: ${(e as ConfigError).message}\n`);
    process.exit(78);
  }
  const dir = await checkDataDir(config.dataDir, { chosen: config.dataDirSet });
  if (dir.problem) {
    process.stderr.write(`sidecar: the data directory ${dir.problem}\n`);
    process.exit(78);
  }
  // Every line names the workload's service (`service` is the program's own name, as for every Novamesh program).
  const logger = createLogger({ service: 'sidecar', instance: config.sidecarId, level: config.logLevel }).child({
    meshService: config.service,
  });
  if (dir.warning) logger.warn({ dataDir: config.dataDir }, `SIDECAR_DATA_DIR ${dir.warning}`);
  const metrics = new SidecarMetrics();
  const accessLog = new AccessLog(logger.child({ component: 'access' }), config.accessLog);
  const identity = new IdentityHolder({
    service: config.service,
    namespace: config.namespace,
    dataDir: config.dataDir,
    logger,
    newRootRenewMaxMs: config.newRootRenewMaxMs,
  });
  const rateLimitStore = new RedisRateLimits({
    url: config.redisUrl,
    timeoutMs: config.rateLimitTimeoutMs,
    service: config.service,
    sidecarId: config.sidecarId,
    logger: logger.child({ component: 'rate-limit' }),
    onError: () => metrics.rateLimitStoreErrors.inc(),
  });
  let lastShedLog = 0;
  const inFlight = new InFlightLimit(config.maxInFlight, (direction) => {
    if (direction === 'inbound') metrics.inbound(503, 'OVERLOADED', 0);
    else metrics.outbound('', 503, 'OVERLOADED', 0);
    // At most one line per 10 s: logging every shed request would add load where there is too much.
    if (Date.now() - lastShedLog < 10_000) return;
    lastShedLog = Date.now();
    logger.warn({ maxInFlight: config.maxInFlight }, 'overloaded: shedding requests beyond SIDECAR_MAX_IN_FLIGHT');
  });
  const dataPlane = new DataPlane({
    identity,
    rateLimitStore: () => rateLimitStore.start(),
    ...(config.zone ? { locality: config.zone } : {}),
    onEjected: (service, ids) => {
      metrics.ejections.inc({ upstream: service }, ids.length);
      logger.warn({ upstream: service, endpoints: ids }, 'outlier ejected');
    },
  });
  const store = new SnapshotStore(config.service, config.dataDir, (snapshot) => {
    dataPlane.apply(snapshot);
    metrics.snapshotVersion.set(snapshot.version);
    identity.useFiles(snapshot.inbound.mtls.certificates).catch((err) => {
      logger.error({ err: (err as Error).message }, 'bring-your-own certificates refused; keeping the current ones');
    });
  });
  const onOffer = (outcome: OfferOutcome) => {
    const snap = store.snapshot;
    if (outcome.restarted)
      logger.warn(
        { from: outcome.restarted.from, version: snap?.version, hash: snap?.hash },
        'MESH_PROXY holds a lower version made after the one applied: its versions started over (the stream was lost); snapshot applied',
      );
    else if (outcome.applied)
      logger.info({ version: snap?.version, hash: snap?.hash, upstreams: snap?.upstreams.length }, 'snapshot applied');
    else if (outcome.reason) {
      metrics.snapshotRejections.inc();
      logger.error({ reason: outcome.reason, keeping: snap?.version ?? 0 }, 'snapshot refused');
    }
  };
  const fromDisk = await store.loadFromDisk();
  if (fromDisk.loaded)
    logger.info({ version: store.snapshot?.version }, 'serving the last good snapshot from disk until the control plane answers');
  else if (fromDisk.reason !== 'no snapshot on disk')
    logger.warn({ reason: fromDisk.reason, dataDir: config.dataDir }, 'the snapshot on disk was refused; waiting for proxy-config');

  const inbound = new InboundListener({
    appOrigin: `http://${config.appHost.includes(':') ? `[${config.appHost}]` : config.appHost}:${config.appPort}`,
    appProtocol: config.serviceType,
    ownSpiffeId: () => (identity.ready ? identity.current().spiffeId : undefined),
    policy: () => dataPlane.inbound,
    identity,
    metrics,
    accessLog,
    inFlight,
    fastPath: config.inboundFastPath,
    headersTimeoutMs: config.headersTimeoutMs,
    listenerFiltersTimeoutMs: config.listenerFiltersTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    tunnelIdleTimeoutMs: config.tunnelIdleTimeoutMs,
    onPeerRefused: (reason, peer, remote) => {
      metrics.peerRefusals.inc();
      logger.warn({ reason, peer, remote }, 'inbound connection refused');
    },
  });
  const outbound = new OutboundProxy({
    upstreams: () => dataPlane.upstreams,
    metrics,
    accessLog,
    inFlight,
    fastPath: config.fastPath,
    headersTimeoutMs: config.headersTimeoutMs,
    listenerFiltersTimeoutMs: config.listenerFiltersTimeoutMs,
    idleTimeoutMs: config.idleTimeoutMs,
    tunnelIdleTimeoutMs: config.tunnelIdleTimeoutMs,
  });
  const ports: Record<string, number> = {};
  let draining = false;
  const admin = new AdminServer({
    sidecarId: config.sidecarId,
    service: config.service,
    store,
    dataPlane,
    identity,
    metrics,
    ports: () => ports,
    needsCertificate: config.joinToken !== undefined,
    draining: () => draining,
  });
  ports.inbound = await listening(
    inbound.listen(config.inboundPort, config.bindHost),
    `${config.bindHost}:${config.inboundPort}`,
    'SIDECAR_INBOUND_PORT (meshctl --inbound-port)',
    'SIDECAR_BIND_HOST',
  );
  ports.outbound = await listening(
    outbound.listen(config.outboundPort, '127.0.0.1'),
    `127.0.0.1:${config.outboundPort}`,
    'SIDECAR_OUTBOUND_PORT (meshctl --outbound-port)',
  );
  for (const [service, port] of Object.entries(config.upstreamPorts))
    ports[`upstream:${service}`] = await listening(
      outbound.listen(port, '127.0.0.1', service),
      `127.0.0.1:${port}`,
      `SIDECAR_UPSTREAM_PORTS ${service}=${port} (meshctl --upstream-port)`,
    );
  ports.admin = await listening(
    admin.listen(config.adminPort, '127.0.0.1'),
    `127.0.0.1:${config.adminPort}`,
    'SIDECAR_ADMIN_PORT (meshctl --admin-port)',
  );
  logger.info({ sidecar: config.sidecarId, ports, app: config.appPort }, 'sidecar ready');

  const link = new ControlPlaneLink(config, logger, store, onOffer, () => {
    // Callers open mutual TLS to this endpoint (it carries the sidecar label): not before it can answer.
    if (!config.joinToken || identity.ready) return undefined;
    return identity.refusal === undefined
      ? 'waiting for a mesh certificate (callers open mutual TLS to it)'
      : 'the certificate authority refused the join token; restart the sidecar with a new one';
  });
  identity.subscribe((change) => {
    if (change === 'certificate') link.registerNow();
  });
  const connected = link.connect();
  connected.then(
    () => link.start(ports.inbound as number),
    (err) => logger.error({ err: (err as Error).message }, 'control plane link failed; serving with what this sidecar has'),
  );
  if (config.joinToken) {
    // The identity resumes a saved certificate at once; only issuing and renewing wait for NATS.
    identity
      .startMesh(lazyCertificateClient(connected), config.joinToken)
      .catch((err) => logger.error({ err: (err as Error).message }, 'no mesh certificate: the CA refused the join token'));
  } else logger.warn('no SIDECAR_JOIN_TOKEN: this sidecar has no mesh certificate and speaks plaintext only');

  onShutdown(
    logger,
    async () => {
      const t0 = performance.now();
      draining = true;
      // Leave the load-balancing sets first, give callers time to see it, then finish what is in flight.
      // Steps that need NATS are bounded: with the control plane down, shutdown must not hang on it.
      await within(1_000, link.deregister());
      await new Promise((r) => setTimeout(r, Math.min(config.drainMs, 1_000)));
      await Promise.all([inbound.close(config.drainMs), outbound.close(config.drainMs)]);
      admin.close();
      dataPlane.close();
      rateLimitStore.close();
      identity.close();
      await within(1_000, link.close());
      logger.info({ ms: Math.round(performance.now() - t0) }, 'drained');
      // Cut off only well after the drain: every other step above is bounded by 1 s.
    },
    config.drainMs + 10_000,
  );
}

/** Waits for `p`, but no longer than `ms`. */
async function within(ms: number, p: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/**
 * The port `listen` bound; a port another process holds (or one this user may not bind) ends the
 * start with the setting to change named (exit 78, as every configuration problem), not a stack trace.
 */
async function listening(listen: Promise<number>, address: string, setting: string, hostSetting?: string): Promise<number> {
  try {
    return await listen;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EADDRINUSE' && code !== 'EACCES' && code !== 'EADDRNOTAVAIL') throw err;
    const why =
      code === 'EADDRINUSE'
        ? 'is in use by another process'
        : code === 'EACCES'
          ? 'may not be bound by this user'
          : 'is not an address of this machine';
    const change = code === 'EADDRNOTAVAIL' && hostSetting ? hostSetting : setting;
    process.stderr.write(`sidecar: cannot listen on ${address}: it ${why}; choose another with ${change}\n`);
    process.exit(78);
  }
}

/** A certificate client whose calls wait until the control-plane link is connected. */
function lazyCertificateClient(connected: Promise<MeshManager>): CertificateClient {
  return {
    requestCertificate: async (req, opts) => (await connected).requestCertificate(req, opts),
    async *watchTrustBundle(opts) {
      yield* (await connected).watchTrustBundle(opts);
    },
    async *watchRevocations(opts) {
      yield* (await connected).watchRevocations(opts);
    },
  };
}

main().catch((err) => {
  process.stderr.write(`sidecar: failed to start: ${err?.stack ?? err}\n`);
  process.exit(1);
});
