import type { NatsConnection } from '@nats-io/transport-node';
import { connectBus, drainBus, followLastValue } from '@novamesh/bus';
import { ErrorCode, LOCALITY_LABEL, MeshError, NAMESPACE_LABEL, SIDECAR_LABEL, streams, subjects } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { MeshManager } from '@novamesh/sdk';
import type { SidecarConfig } from './config';
import type { OfferOutcome, SnapshotStore } from './snapshot-store';

const RETRY_MS = 1_000;

/**
 * Everything the sidecar gets from and tells the control plane, all of it optional for serving
 * (static stability): connects to NATS in the background and keeps reconnecting, follows the
 * service's snapshot subject (the retained value first, then every change), acknowledges the
 * version in use on every change and every `ackIntervalMs`, and keeps this workload's endpoint
 * registered (re-adding it when discovery lost it). None of it blocks traffic.
 */
export class ControlPlaneLink {
  private nc: NatsConnection | undefined;
  private manager: MeshManager | undefined;
  private follower: { stop(): void; refresh(): Promise<void> } | undefined;
  /** A second read of the stored snapshot, asked for by the store (see OfferOutcome.recheckMs). */
  private recheck: NodeJS.Timeout | undefined;
  private timers: NodeJS.Timeout[] = [];
  /** Registration and heartbeat timers: stopped on `deregister()`, so a draining sidecar stays out. */
  private registrationTimers: NodeJS.Timeout[] = [];
  /** The registration check in progress (one at a time). */
  private registering: Promise<void> | undefined;
  /** `deregister()` was called: the endpoint is never added again. */
  private leaving = false;
  private closed = false;
  private inboundPort = 0;

  /** Why the endpoint waits for {@link registrationGate}, as last logged (each new reason is logged once). */
  private gateLogged: string | undefined;

  constructor(
    private readonly cfg: SidecarConfig,
    private readonly logger: Logger,
    private readonly store: SnapshotStore,
    private readonly onApplied: (outcome: OfferOutcome) => void,
    /**
     * Whether the endpoint may be registered yet, and why not: callers open mutual TLS to an
     * endpoint with the sidecar label, so one is registered only once it can answer (it holds a
     * certificate). Checked before every registration; {@link registerNow} when it changes.
     */
    private readonly registrationGate: () => string | undefined = () => undefined,
  ) {}

  /** The SDK client (for certificates) once connected. */
  get mesh(): MeshManager | undefined {
    return this.manager;
  }

  /** Connects (waiting for NATS as long as it takes, in the background of the caller's choice). */
  async connect(): Promise<MeshManager> {
    this.nc = await connectBus({
      servers: this.cfg.natsUrl,
      name: `sidecar-${this.cfg.sidecarId}`,
      waitOnFirstConnect: true,
      logger: this.logger,
    });
    const manager = new MeshManager({ connection: this.nc, heartbeat: false });
    // The mesh's streams appear when discovery first runs; until then keep trying (traffic does not wait).
    for (let attempt = 0; ; attempt++) {
      try {
        await manager.initialize();
        break;
      } catch (err) {
        if (this.closed) throw err;
        if (attempt % 10 === 0) this.logger.warn({ err: (err as Error).message }, 'mesh not ready yet; retrying');
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
    this.manager = manager;
    return manager;
  }

  /** Starts following the snapshot, the acknowledgements and (when configured) the registration. */
  start(inboundPort: number): void {
    this.inboundPort = inboundPort;
    this.followSnapshots();
    this.ack();
    this.timers.push(setInterval(() => this.ack(), this.cfg.ackIntervalMs));
    if (this.cfg.register) {
      // Checked every 2 s for the first minute (several workloads of a new service may race to
      // register it; the losers' endpoints come back within one check), then every ack interval.
      this.checkRegistration();
      const early = setInterval(() => this.checkRegistration(), 2_000);
      const late = setTimeout(() => {
        clearInterval(early);
        if (this.leaving) return;
        const steady = setInterval(() => this.checkRegistration(), Math.max(this.cfg.ackIntervalMs, 2_000));
        steady.unref();
        this.registrationTimers.push(steady);
      }, 60_000);
      // Liveness: a sidecar that dies without deregistering (SIGKILL, power loss) turns unhealthy
      // after the service's heartbeat TTL and leaves every caller's load-balancing set.
      const heartbeat = setInterval(() => void this.heartbeat(), Math.max(Math.floor(this.cfg.heartbeatTtlMs / 3), 100));
      this.registrationTimers.push(early, late, heartbeat);
      for (const t of this.registrationTimers) t.unref();
    }
    for (const t of this.timers) t.unref();
  }

  /** Tells the control plane the version in use (fire and forget; core NATS); `leaving`: the last one, as it stops. */
  ack(leaving = false): void {
    const nc = this.nc;
    if (!nc || nc.isClosed()) return;
    try {
      const ack = this.store.ack(this.cfg.sidecarId, this.endpointAddress());
      nc.publish(subjects.proxyAck(this.cfg.service, this.cfg.sidecarId), JSON.stringify(leaving ? { ...ack, leaving: true } : ack));
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'acknowledgement not sent');
    }
  }

  private async heartbeat(): Promise<void> {
    // Not for an endpoint held back from registering: discovery would refuse every one (and dead-letter it).
    if (this.registrationGate() !== undefined) return;
    await this.manager?.heartbeat(this.cfg.service, [this.cfg.sidecarId]).catch((err) => {
      this.logger.debug({ err: (err as Error).message }, 'heartbeat not sent');
    });
  }

  /**
   * Removes this workload's endpoint (SIGTERM), so callers stop picking it before the listeners
   * close. From here on it is never added again and no heartbeat is sent: a registration check
   * still running looks at `leaving` before each change it would make (it is not waited for: it
   * may take as long as discovery does to answer, and the removal must go out at once).
   */
  async deregister(): Promise<void> {
    this.leaving = true;
    this.stopRegistrationTimers();
    if (!this.cfg.register || !this.manager) return;
    await this.manager.removeEndpoint(this.cfg.service, this.cfg.sidecarId, { drain: 0 }).catch((err) => {
      this.logger.warn({ err: (err as Error).message }, 'could not deregister the endpoint');
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopRegistrationTimers();
    for (const t of this.timers) clearInterval(t);
    this.follower?.stop();
    clearTimeout(this.recheck);
    // No acknowledgement follows this one (the timers are stopped): proxy-status forgets this sidecar
    // now rather than report it stale. The drain below flushes it.
    this.ack(true);
    await drainBus(this.nc);
  }

  private stopRegistrationTimers(): void {
    for (const t of this.registrationTimers) {
      clearInterval(t);
      clearTimeout(t);
    }
    this.registrationTimers = [];
  }

  /** Checks the registration at once (the gate opened), once started. */
  registerNow(): void {
    if (this.cfg.register && this.inboundPort && !this.closed) this.checkRegistration();
  }

  /** Starts a registration check unless one is running or the sidecar is leaving. */
  private checkRegistration(): void {
    if (this.registering || this.leaving) return;
    this.registering = this.ensureRegistered().finally(() => {
      this.registering = undefined;
    });
  }

  private endpointAddress(): string {
    return `${this.cfg.address}:${this.inboundPort}`;
  }

  /**
   * The service's snapshot: live as proxy-config publishes it (core NATS), and read back from
   * MESH_PROXY at start, after each reconnect and every `snapshotReconcileMs` (the stored value
   * overrules a live one of the same version: see SnapshotStore.offer). MESH_PROXY missing (before
   * proxy-config first ran) is retried on that period; traffic does not wait.
   */
  private followSnapshots(): void {
    const nc = this.nc;
    if (!nc) return;
    this.follower = followLastValue({
      nc,
      stream: streams.proxy,
      subject: subjects.proxyConfig(this.cfg.service),
      reconcileMs: this.cfg.snapshotReconcileMs,
      logger: this.logger,
      onValue: (data, source) => {
        const outcome = this.store.offer(data, { live: source === 'live' });
        this.onApplied(outcome);
        if (outcome.applied || outcome.reason) this.ack();
        if (outcome.recheckMs !== undefined && !this.recheck && !this.closed) {
          this.recheck = setTimeout(() => {
            this.recheck = undefined;
            void this.follower?.refresh();
          }, outcome.recheckMs);
          this.recheck.unref();
        }
      },
    });
  }

  private endpointLabels(): Record<string, string> {
    return {
      ...this.cfg.labels,
      // Callers open mutual TLS to endpoints with this label: only a sidecar that will have a
      // certificate (it has a join token) can answer it; one without speaks plaintext only.
      ...(this.cfg.joinToken ? { [SIDECAR_LABEL]: this.cfg.sidecarId } : {}),
      [NAMESPACE_LABEL]: this.cfg.namespace,
      ...(this.cfg.zone ? { [LOCALITY_LABEL]: this.cfg.zone } : {}),
    };
  }

  /**
   * Registers the service when discovery does not know it (first workload) and adds this endpoint
   * when it is missing; idempotent, so it also repairs a registry that lost the endpoint.
   */
  private async ensureRegistered(): Promise<void> {
    const m = this.manager;
    if (!m || this.closed || this.leaving) return;
    const wait = this.registrationGate();
    if (wait !== undefined) {
      if (this.gateLogged !== wait) this.logger.info({ endpoint: this.endpointAddress() }, `not registering this endpoint yet: ${wait}`);
      this.gateLogged = wait;
      return;
    }
    const endpoint = {
      id: this.cfg.sidecarId,
      address: this.cfg.address,
      port: this.inboundPort,
      weight: this.cfg.weight,
      labels: this.endpointLabels(),
    };
    try {
      let set: Awaited<ReturnType<MeshManager['getService']>> | undefined;
      try {
        set = await m.getService(this.cfg.service);
      } catch (err) {
        if (!(err instanceof MeshError && err.code === ErrorCode.notFound)) throw err;
      }
      if (this.leaving) return; // SIGTERM while discovery answered
      if (!set || set.deregistered) {
        await m.registerService({
          name: this.cfg.service,
          type: this.cfg.serviceType,
          port: this.cfg.servicePort,
          endpoints: [endpoint],
          heartbeat: { ttl: this.cfg.heartbeatTtlMs },
          ...(this.cfg.upstreams ? { upstreams: this.cfg.upstreams } : {}),
        });
        this.logger.info({ endpoint: this.endpointAddress() }, 'registered the service with this endpoint');
        return;
      }
      const mine = set.endpoints.find((e) => e.id === endpoint.id);
      if (!mine && set.endpoints.length > 0 && set.endpoints.every((e) => e.status === 'draining')) {
        // The whole service is draining after a deregistration: an endpoint added now would drain
        // with it. Wait until it is gone, then register it anew.
        this.logger.info('service is draining after a deregistration; registering once it is gone');
        return;
      }
      if (!mine || mine.port !== endpoint.port || mine.address !== endpoint.address) {
        await m.addEndpoint(this.cfg.service, endpoint);
        this.logger.info({ endpoint: this.endpointAddress() }, 'registered this endpoint');
      }
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'registration not confirmed; retrying');
    }
  }
}
