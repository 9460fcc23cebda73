import { randomUUID } from 'node:crypto';
import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectBus, drainBus, encodeJson, lastValues, publishJson, publishRaw, requestJson } from '@novamesh/bus';
import {
  type CaCertsListRequestV1,
  type CaCertV1,
  type CaCommand,
  type CaRevokeResultV1,
  type CaRotateResultV1,
  CaSignRequestV1,
  type CaSignResultV1,
  CaTokenCreateRequestV1,
  type CaTokenCreateResultV1,
  consumers,
  type DeadLetterV1,
  type DiscoveryQueryReplyV1,
  DiscoveryQueryV1,
  type EffectivePolicyV1,
  EndpointAddedV1,
  EndpointRemovedV1,
  type EndpointSetV1,
  type ErrorBody,
  ErrorCode,
  errorFromBody,
  HeartbeatV1,
  MAX_EVENT_BYTES,
  MeshError,
  MeshValidationError,
  type Policy,
  type PolicyApplyResultV1,
  type PolicyCommand,
  type PolicyInput,
  type PolicyKind,
  type RegistryAction,
  type RevocationListV1,
  type RootRotationPhase,
  type Service,
  ServiceDeregisteredV1,
  type ServiceEndpointInput,
  type ServiceInput,
  ServiceRegisteredV1,
  type StoredPolicy,
  streams,
  subjects,
  type TrustBundleV1,
  validate,
} from '@novamesh/contracts';
import { createWorkloadCsr, signCsrWithKey } from './workload-csr';

export interface MeshManagerOptions {
  /** NATS servers; default `NATS_URL`-style `nats://127.0.0.1:4222`. */
  servers?: string | string[];
  /** Use an existing connection instead (the manager will not close it). */
  connection?: NatsConnection;
  /** Connection name. */
  name?: string;
  /** Timeout of queries and waits (ms), default 5000. */
  timeoutMs?: number;
  /**
   * Heartbeat settings added to services registered without `heartbeat`, and kept alive by
   * this manager. `false` turns automatic heartbeats off. Default `{ ttl: '10s' }`.
   */
  heartbeat?: { ttl: string | number; deregisterAfter?: string | number } | false;
  /** Receives errors of background work (heartbeats), which never throw. */
  onError?: (err: MeshError) => void;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface RegisterOptions extends CallOptions {
  /**
   * Resolve only once discovery has processed the command: applied, or refused (the promise
   * then rejects with discovery's reason). Default false: resolve once the stream stored it.
   */
  wait?: boolean;
}

const DEFAULT_HEARTBEAT = { ttl: '10s' };

/** Who asks for a certificate and how it proves it: a join token, or (renewal) its current certificate and key. */
export type CertificateRequest =
  | { service: string; namespace?: string; token: string }
  | { service: string; namespace?: string; certificatePem: string; keyPem: string };

/** A workload certificate with the private key generated for it (in memory only; never sent anywhere). */
export interface WorkloadCertificate extends Omit<CaSignResultV1, 'ok'> {
  /** Unencrypted PKCS#8 PEM of the certificate's ECDSA P-256 key. */
  keyPem: string;
}

/**
 * The seed's MeshManager: registers services, keeps them alive with heartbeats, and finds
 * and watches endpoints, speaking only the public contract (`mesh.v1.*` subjects). Input is
 * validated before anything is sent, so refusals arrive as `MeshValidationError` with every
 * problem listed. One instance may be used concurrently.
 */
export class MeshManager {
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private readonly ownsConnection: boolean;
  private readonly heartbeats = new Map<string, NodeJS.Timeout>();
  private readonly timeoutMs: number;

  constructor(private readonly opts: MeshManagerOptions = {}) {
    this.ownsConnection = !opts.connection;
    this.nc = opts.connection;
    this.timeoutMs = opts.timeoutMs ?? 5_000;
  }

  /** Connects and checks that the mesh's streams exist (discovery provisions them). */
  async initialize(opts: CallOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    if (!this.nc) {
      try {
        this.nc = await connectBus({
          servers: this.opts.servers ?? 'nats://127.0.0.1:4222',
          name: this.opts.name ?? 'novamesh-sdk',
          timeout: this.timeoutMs,
        });
      } catch (e) {
        throw new MeshError(
          ErrorCode.unavailable,
          `cannot reach NATS at ${String(this.opts.servers ?? 'nats://127.0.0.1:4222')}: ${(e as Error).message}`,
          {
            cause: e,
            retryable: true,
          },
        );
      }
    }
    this.js = jetstream(this.nc, { timeout: this.timeoutMs });
    try {
      await this.js.streams.get(streams.registry);
    } catch (e) {
      throw new MeshError(ErrorCode.unavailable, `the mesh registry stream ${streams.registry} does not exist: start discovery first`, {
        cause: e,
        retryable: true,
      });
    }
  }

  private ready(): { nc: NatsConnection; js: JetStreamClient } {
    if (!this.nc || !this.js) throw new MeshError(ErrorCode.unavailable, 'MeshManager is not initialized: call initialize() first');
    return { nc: this.nc, js: this.js };
  }

  /** Registers (or replaces) a service. Starts heartbeats for it unless turned off. */
  async registerService(input: ServiceInput, opts: RegisterOptions = {}): Promise<Service> {
    opts.signal?.throwIfAborted();
    const withHeartbeat =
      input.heartbeat || this.opts.heartbeat === false ? input : { ...input, heartbeat: this.opts.heartbeat ?? DEFAULT_HEARTBEAT };
    const service = validate(ServiceRegisteredV1, withHeartbeat, 'service');
    await this.command(service.name, 'register', withHeartbeat, opts);
    if (service.heartbeat && this.opts.heartbeat !== false) this.startHeartbeats(service.name, service.heartbeat.ttl);
    return service;
  }

  /** Drains and removes a service; stops its heartbeats. */
  async deregisterService(name: string, opts: RegisterOptions & { drain?: string | number } = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    const body = { name, ...(opts.drain !== undefined ? { drain: opts.drain } : {}) };
    validate(ServiceDeregisteredV1, body, 'deregistration');
    this.stopHeartbeats(name);
    await this.command(name, 'deregister', body, opts);
  }

  /**
   * Publishes one registry command with a fresh `Nats-Msg-Id`. With `wait`, resolves once
   * discovery has processed it: the registry consumer's ack floor has passed the command's
   * stream sequence; if discovery refused it, rejects with the refusal from the dead letter.
   */
  private async command(service: string, action: RegistryAction, body: unknown, opts: RegisterOptions = {}): Promise<void> {
    const { js } = this.ready();
    // Discovery refuses an event beyond MAX_EVENT_BYTES, and NATS one beyond its max_payload: say so
    // here, as a refusal of the input, rather than as a mesh that cannot be reached.
    const data = encodeJson(body);
    if (data.byteLength > MAX_EVENT_BYTES)
      throw new MeshValidationError(
        `${action} of "${service}" is ${data.byteLength} bytes, more than the ${MAX_EVENT_BYTES} a registry event may be: register fewer endpoints or labels per event (endpoint.add takes one endpoint at a time)`,
        [],
        ErrorCode.tooLarge,
      );
    const msgId = randomUUID();
    let seq: number;
    try {
      seq = (await publishRaw(js, subjects.registry(service, action), data, { msgId })).seq;
    } catch (e) {
      throw new MeshError(ErrorCode.unavailable, `could not publish ${action} of "${service}": ${(e as Error).message}`, {
        cause: e,
        retryable: true,
      });
    }
    if (opts.wait) await this.waitProcessed(service, seq, msgId, opts.signal);
  }

  private async waitProcessed(service: string, seq: number, msgId: string, signal?: AbortSignal): Promise<void> {
    const jsm = await this.manager();
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      signal?.throwIfAborted();
      const info = await jsm.consumers.info(streams.registry, consumers.discoveryRegistry).catch(() => undefined);
      if (info && info.ack_floor.stream_seq >= seq) break;
      if (Date.now() > deadline)
        throw new MeshError(
          ErrorCode.timeout,
          `${service}: published, but discovery has not processed it within ${this.timeoutMs}ms (is discovery running?); it stays queued and will be applied`,
          { retryable: true },
        );
      await new Promise((r) => setTimeout(r, 25));
    }
    const refused = await jsm.streams
      .getMessage(streams.deadLetter, { last_by_subj: subjects.deadLetter('registry', service) })
      .then((m) => m?.json<DeadLetterV1>())
      .catch(() => undefined);
    if (refused?.msgId === msgId) throw errorFromBody(refused.error);
  }

  private async manager(): Promise<JetStreamManager> {
    this.jsm ??= await jetstreamManager(this.ready().nc, { timeout: this.timeoutMs });
    return this.jsm;
  }

  async addEndpoint(service: string, endpoint: ServiceEndpointInput, opts: CallOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    const body = validate(EndpointAddedV1, { service, endpoint }, 'endpoint');
    await publishJson(
      this.ready().js,
      subjects.registry(service, 'endpoint.add'),
      { service, endpoint: body.endpoint },
      { msgId: randomUUID() },
    );
  }

  async removeEndpoint(service: string, endpointId: string, opts: CallOptions & { drain?: string | number } = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    const body = { service, endpointId, ...(opts.drain !== undefined ? { drain: opts.drain } : {}) };
    validate(EndpointRemovedV1, body, 'endpoint removal');
    await publishJson(this.ready().js, subjects.registry(service, 'endpoint.remove'), body, { msgId: randomUUID() });
  }

  /** Sends one heartbeat now (automatic heartbeats call this). */
  async heartbeat(service: string, endpointIds?: string[], opts: CallOptions = {}): Promise<void> {
    opts.signal?.throwIfAborted();
    const body = { service, ...(endpointIds ? { endpointIds } : {}) };
    validate(HeartbeatV1, body, 'heartbeat');
    await publishJson(this.ready().js, subjects.registry(service, 'heartbeat'), body);
  }

  /** The current endpoint set of one service; `MESH_NOT_FOUND` when it is not registered. */
  async getService(name: string, opts: CallOptions = {}): Promise<EndpointSetV1> {
    const [set] = await this.query({ name }, opts);
    if (!set) throw new MeshError(ErrorCode.notFound, `service "${name}" is not registered`);
    return set;
  }

  /** Every registered service, or those with endpoints matching `labels`. */
  async listServices(opts: CallOptions & { labels?: Record<string, string> } = {}): Promise<EndpointSetV1[]> {
    return this.query(opts.labels ? { labels: opts.labels } : {}, opts);
  }

  private async query(q: { name?: string; labels?: Record<string, string> }, opts: CallOptions): Promise<EndpointSetV1[]> {
    validate(DiscoveryQueryV1, q, 'query');
    const reply = await requestJson<DiscoveryQueryReplyV1>(this.ready().nc, subjects.discoveryQuery, q, {
      timeout: this.timeoutMs,
      signal: opts.signal,
    });
    if (!reply.ok) throw errorFromBody(reply.error);
    return reply.services;
  }

  /**
   * Endpoint sets of a service as they change, starting with the current one. Ends when the
   * signal aborts or the manager closes.
   */
  watchEndpoints(name: string, opts: CallOptions = {}): AsyncGenerator<EndpointSetV1> {
    return lastValues<EndpointSetV1>(this.ready().js, streams.endpoints, subjects.endpoints(name), opts.signal);
  }

  /**
   * Calls `onChange` each time the connection to NATS is lost (`disconnected`) or back
   * (`reconnected`, with the server), until `signal` aborts: a watch can then say that what it
   * shows may be stale, rather than look like a service that does not change.
   */
  onConnectionChange(onChange: (change: 'disconnected' | 'reconnected', server: string) => void, opts: CallOptions = {}): void {
    const status = this.ready().nc.status()[Symbol.asyncIterator]();
    opts.signal?.addEventListener('abort', () => void status.return?.(undefined), { once: true });
    void (async () => {
      for (let s = await status.next(); !s.done; s = await status.next()) {
        if (s.value.type === 'disconnect') onChange('disconnected', s.value.server);
        else if (s.value.type === 'reconnect') onChange('reconnected', s.value.server);
      }
    })().catch(() => undefined);
  }

  private startHeartbeats(name: string, ttlMs: number): void {
    this.stopHeartbeats(name);
    const every = Math.max(100, Math.floor(ttlMs / 3));
    const timer = setInterval(() => {
      this.heartbeat(name).catch((e) =>
        this.opts.onError?.(
          e instanceof MeshError
            ? e
            : new MeshError(ErrorCode.unavailable, `heartbeat of "${name}" failed: ${(e as Error).message}`, { cause: e }),
        ),
      );
    }, every);
    timer.unref();
    this.heartbeats.set(name, timer);
  }

  private stopHeartbeats(name: string): void {
    const t = this.heartbeats.get(name);
    if (t) clearInterval(t);
    this.heartbeats.delete(name);
  }

  // ── Policies ────────────────────────────────────────────────────────────────────────────

  /**
   * Validates and stores any policy document (`kind` says which). Rejects with a
   * `MeshValidationError` listing every problem, or `MESH_CONFLICT` when `expectedRevision` is
   * stale. With `dryRun` nothing is stored and the result shows the diff and the effective policy.
   */
  async applyPolicy(
    policy: PolicyInput | Record<string, unknown>,
    opts: CallOptions & { dryRun?: boolean; expectedRevision?: number } = {},
  ): Promise<PolicyApplyResultV1> {
    return this.policyCommand<PolicyApplyResultV1>(
      'apply',
      { policy, dryRun: opts.dryRun ?? false, ...(opts.expectedRevision !== undefined ? { expectedRevision: opts.expectedRevision } : {}) },
      opts,
    );
  }

  /** The seed's `applyTrafficPolicy`. */
  applyTrafficPolicy(
    policy: Omit<Extract<PolicyInput, { kind: 'TrafficPolicy' }>, 'kind'>,
    opts: CallOptions & { dryRun?: boolean; expectedRevision?: number } = {},
  ) {
    return this.applyPolicy({ kind: 'TrafficPolicy', ...policy }, opts);
  }
  applyRouteRule(
    policy: Omit<Extract<PolicyInput, { kind: 'RouteRule' }>, 'kind'>,
    opts: CallOptions & { dryRun?: boolean; expectedRevision?: number } = {},
  ) {
    return this.applyPolicy({ kind: 'RouteRule', ...policy }, opts);
  }
  applyRateLimitPolicy(
    policy: Omit<Extract<PolicyInput, { kind: 'RateLimitPolicy' }>, 'kind'>,
    opts: CallOptions & { dryRun?: boolean; expectedRevision?: number } = {},
  ) {
    return this.applyPolicy({ kind: 'RateLimitPolicy', ...policy }, opts);
  }
  applyAuthorizationPolicy(
    policy: Omit<Extract<PolicyInput, { kind: 'AuthorizationPolicy' }>, 'kind'>,
    opts: CallOptions & { dryRun?: boolean; expectedRevision?: number } = {},
  ) {
    return this.applyPolicy({ kind: 'AuthorizationPolicy', ...policy }, opts);
  }
  applyMutualTLSPolicy(
    policy: Omit<Extract<PolicyInput, { kind: 'MutualTLSPolicy' }>, 'kind'>,
    opts: CallOptions & { dryRun?: boolean; expectedRevision?: number } = {},
  ) {
    return this.applyPolicy({ kind: 'MutualTLSPolicy', ...policy }, opts);
  }

  /**
   * The seed's `enableMutualTLS(service, certPath, keyPath, caPath)`: strict mTLS for the
   * service with bring-your-own certificate files (absolute paths), stored as the
   * MutualTLSPolicy `<service>-mtls`.
   */
  enableMutualTLS(service: string, certPath: string, keyPath: string, caPath: string, opts: CallOptions & { dryRun?: boolean } = {}) {
    return this.applyPolicy(
      {
        kind: 'MutualTLSPolicy',
        name: `${service}-mtls`,
        serviceName: service,
        mode: 'strict',
        certificates: { certPath, keyPath, caPath },
      },
      opts,
    );
  }

  async deletePolicy(
    kind: PolicyKind,
    name: string,
    opts: CallOptions & { expectedRevision?: number } = {},
  ): Promise<{ deletedRevision: number }> {
    return this.policyCommand(
      'delete',
      { kind, name, ...(opts.expectedRevision !== undefined ? { expectedRevision: opts.expectedRevision } : {}) },
      opts,
    );
  }

  async getPolicy(kind: PolicyKind, name: string, opts: CallOptions = {}): Promise<StoredPolicy> {
    return this.policyCommand('get', { kind, name }, opts);
  }

  async listPolicies(filter: { kind?: PolicyKind; serviceName?: string } = {}, opts: CallOptions = {}): Promise<StoredPolicy[]> {
    return (await this.policyCommand<{ policies: StoredPolicy[] }>('list', filter, opts)).policies;
  }

  async policyHistory(
    kind: PolicyKind,
    name: string,
    opts: CallOptions = {},
  ): Promise<{ revision: number; operation: string; updatedAt: string; policy?: Policy }[]> {
    return (
      await this.policyCommand<{ revisions: { revision: number; operation: string; updatedAt: string; policy?: Policy }[] }>(
        'history',
        { kind, name },
        opts,
      )
    ).revisions;
  }

  async rollbackPolicy(kind: PolicyKind, name: string, toRevision: number, opts: CallOptions = {}): Promise<PolicyApplyResultV1> {
    return this.policyCommand('rollback', { kind, name, toRevision }, opts);
  }

  async analyzePolicies(
    opts: CallOptions = {},
  ): Promise<{ level: string; code: string; message: string; policy?: string; path?: string }[]> {
    return (
      await this.policyCommand<{ findings: { level: string; code: string; message: string; policy?: string; path?: string }[] }>(
        'analyze',
        {},
        opts,
      )
    ).findings;
  }

  /** Effective policies of a service as they change, starting with the current one. */
  watchEffectivePolicy(service: string, opts: CallOptions = {}): AsyncGenerator<EffectivePolicyV1> {
    return lastValues<EffectivePolicyV1>(this.ready().js, streams.config, subjects.effectivePolicy(service), opts.signal);
  }

  private async policyCommand<T>(command: PolicyCommand, body: unknown, opts: CallOptions): Promise<T> {
    const reply = await requestJson<({ ok: true } & T) | { ok: false; error: ErrorBody }>(this.ready().nc, subjects.policy(command), body, {
      timeout: this.timeoutMs,
      signal: opts.signal,
    });
    if (!reply.ok) throw errorFromBody((reply as { error: ErrorBody }).error);
    return reply as T;
  }

  // ── Certificates ────────────────────────────────────────────────────────────────────────

  /**
   * Asks the certificate authority for a join token for one workload identity (operator action).
   * The token is a secret shown once: the CA keeps only its hash.
   */
  async createJoinToken(
    service: string,
    opts: CallOptions & { namespace?: string; ttl?: string | number; uses?: number } = {},
  ): Promise<CaTokenCreateResultV1> {
    const body = {
      service,
      ...(opts.namespace !== undefined ? { namespace: opts.namespace } : {}),
      ...(opts.ttl !== undefined ? { ttl: opts.ttl } : {}),
      ...(opts.uses !== undefined ? { uses: opts.uses } : {}),
    };
    validate(CaTokenCreateRequestV1, body, 'token request');
    return this.caCommand<CaTokenCreateResultV1>('token.create', body, opts);
  }

  /**
   * Gets a workload certificate: generates a fresh ECDSA P-256 key here (it never leaves this
   * process), builds a CSR for the identity's SPIFFE ID in the mesh's trust domain (read from the
   * trust bundle), and sends it with the proof — a join token, or for renewal the current
   * certificate plus a signature with its key. Rejects with `MESH_FORBIDDEN` (proof refused) or
   * `MESH_INVALID` (CSR refused), each with the reason in `issues`.
   */
  async requestCertificate(req: CertificateRequest, opts: CallOptions = {}): Promise<WorkloadCertificate> {
    opts.signal?.throwIfAborted();
    const identity = { namespace: req.namespace ?? 'default', service: req.service };
    validate(CaSignRequestV1.shape.identity, identity, 'identity');
    const bundle = await this.getTrustBundle(opts);
    const { csrPem, keyPem } = await createWorkloadCsr({ trustDomain: bundle.trustDomain, ...identity });
    const proof =
      'token' in req ? { token: req.token } : { certificatePem: req.certificatePem, signature: signCsrWithKey(csrPem, req.keyPem) };
    const body = validate(CaSignRequestV1, { csr: csrPem, identity, proof }, 'certificate request');
    const { ok: _ok, ...issued } = await this.caCommand<CaSignResultV1>('sign', body, opts);
    return { ...issued, keyPem };
  }

  /** Revokes an issued certificate (operator action); idempotent. `MESH_NOT_FOUND` for an unknown serial. */
  async revokeCertificate(serial: string, opts: CallOptions & { reason?: string } = {}): Promise<CaRevokeResultV1> {
    return this.caCommand<CaRevokeResultV1>('revoke', { serial, ...(opts.reason ? { reason: opts.reason } : {}) }, opts);
  }

  /**
   * Root rotation (operator action): `begin` introduces a new root (both roots trusted, new
   * certificates chain to the new one), `status` counts live certificates per root, `finish` drops
   * the old root — refused with `MESH_CONFLICT` while a live certificate still chains to it.
   */
  async rotateRoot(phase: RootRotationPhase, opts: CallOptions = {}): Promise<CaRotateResultV1> {
    return this.caCommand<CaRotateResultV1>('rotate', { phase }, opts);
  }

  /** Certificates the CA issued, newest first, with their state now (issued, revoked or expired). */
  async listCertificates(filter: Partial<CaCertsListRequestV1> = {}, opts: CallOptions = {}): Promise<CaCertV1[]> {
    return (await this.caCommand<{ certs: CaCertV1[] }>('certs.list', filter, opts)).certs;
  }

  /** The current trust bundle, as retained on `mesh.v1.ca.bundle`. `MESH_UNAVAILABLE` when no CA has published one. */
  async getTrustBundle(opts: CallOptions = {}): Promise<TrustBundleV1> {
    opts.signal?.throwIfAborted();
    const jsm = await this.manager();
    const msg = await jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caBundle }).catch(() => null);
    if (!msg)
      throw new MeshError(ErrorCode.unavailable, `no trust bundle on ${subjects.caBundle}: is the certificate authority running?`, {
        retryable: true,
      });
    return msg.json<TrustBundleV1>();
  }

  /** Trust bundles as they change, starting with the current one. */
  watchTrustBundle(opts: CallOptions = {}): AsyncGenerator<TrustBundleV1> {
    return lastValues<TrustBundleV1>(this.ready().js, streams.ca, subjects.caBundle, opts.signal);
  }

  /** Revocation lists as they change, starting with the current one. */
  watchRevocations(opts: CallOptions = {}): AsyncGenerator<RevocationListV1> {
    return lastValues<RevocationListV1>(this.ready().js, streams.ca, subjects.caRevoked, opts.signal);
  }

  private async caCommand<T>(command: CaCommand, body: unknown, opts: CallOptions): Promise<T> {
    const reply = await requestJson<({ ok: true } & T) | { ok: false; error: ErrorBody }>(this.ready().nc, subjects.ca(command), body, {
      timeout: this.timeoutMs,
      signal: opts.signal,
    });
    if (!reply.ok) throw errorFromBody((reply as { error: ErrorBody }).error);
    return reply as T;
  }

  /** Stops heartbeats and closes the connection (if the manager opened it). */
  async close(): Promise<void> {
    for (const name of [...this.heartbeats.keys()]) this.stopHeartbeats(name);
    if (this.ownsConnection) await drainBus(this.nc);
    this.nc = undefined;
    this.js = undefined;
    this.jsm = undefined;
  }
}
