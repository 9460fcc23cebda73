import { connect as connectTcp, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { SIDECAR_LABEL, type UpstreamV1 } from '@novamesh/contracts';
import {
  compileUpstreamRoutes,
  EndpointPool,
  OutlierDetector,
  type OutlierOutcome,
  type PoolEndpoint,
  type RouteTable,
} from '@novamesh/dataplane';
import { connectMtls } from '@novamesh/identity';
import { type buildConnector, Pool } from 'undici';
import type { IdentityHolder } from './identity-holder';

/** One endpoint of an upstream with the connection pool that reaches it. */
export interface RuntimeEndpoint extends PoolEndpoint {
  address: string;
  port: number;
  /** Whether connections originate mutual TLS (the endpoint has a sidecar and the upstream does not disable mTLS). */
  mtls: boolean;
  dispatcher: Pool;
  /** address:port:mtls — a pool is reused across snapshots while this stays the same. */
  key: string;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 2_000;

/**
 * undici connector: a TCP connection (plaintext endpoints, or mTLS endpoints before this sidecar has
 * a certificate, which a permissive upstream still accepts) or a mutual-TLS connection with the
 * identity's current certificate, verifying the server's SPIFFE ID. Errors carry `meshStage`
 * (`connect` or `tls`) so the caller can say which part failed.
 */
function connector(opts: { mtls: boolean; identity: IdentityHolder; serverSpiffeId: string; timeoutMs: number }): buildConnector.connector {
  return (o, cb) => {
    const useTls = opts.mtls && opts.identity.ready;
    let tcpUp = false;
    let done = false;
    const finish = (err: Error | null, socket?: Socket) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        (err as Error & { meshStage?: string }).meshStage = tcpUp && useTls ? 'tls' : 'connect';
        cb(err, null);
      } else cb(null, socket as Socket);
    };
    const port = Number(o.port);
    const socket: Socket | TLSSocket = useTls
      ? connectMtls(opts.identity, { host: o.hostname, port, serverSpiffeId: opts.serverSpiffeId, minVersion: 'TLSv1.3' })
      : connectTcp({ host: o.hostname, port });
    socket.setNoDelay(true);
    socket.once('connect', () => {
      tcpUp = true;
      if (!useTls) finish(null, socket);
    });
    if (useTls) socket.once('secureConnect', () => finish(null, socket));
    socket.once('error', (err) => finish(err));
    const timer = setTimeout(() => {
      const err = Object.assign(new Error(`connect timeout after ${opts.timeoutMs} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' });
      socket.destroy();
      finish(err);
    }, opts.timeoutMs);
  };
}

/**
 * Everything the outbound side keeps for one upstream service between snapshots: its endpoints and
 * their connection pools (kept across snapshots while address, port and TLS stay the same, so
 * long-lived connections survive config changes), a balancer per subset, the route table, and
 * passive outlier detection. Single-threaded use.
 */
export class UpstreamRuntime {
  spec: UpstreamV1;
  routes: RouteTable;
  pool: EndpointPool<RuntimeEndpoint>;
  outlier: OutlierDetector | undefined;
  private endpoints: RuntimeEndpoint[] = [];
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    spec: UpstreamV1,
    private readonly deps: { identity: IdentityHolder; locality?: string; onEjected: (service: string, ids: string[]) => void },
  ) {
    this.spec = spec;
    this.routes = compileUpstreamRoutes(spec);
    this.pool = this.build(spec, undefined);
  }

  get service(): string {
    return this.spec.service;
  }

  /** Applies a new snapshot's view of this upstream; pools of unchanged endpoints are kept, others closed gracefully. */
  update(spec: UpstreamV1): void {
    const previous = this.spec;
    this.spec = spec;
    this.routes = compileUpstreamRoutes(spec);
    this.pool = this.build(spec, previous);
  }

  /** Endpoints as the admin page shows them. */
  describe(): { id: string; address: string; port: number; status: string; weight: number; mtls: boolean; active: number }[] {
    return this.endpoints.map((e) => ({
      id: e.id,
      address: e.address,
      port: e.port,
      status: e.status,
      weight: e.weight,
      mtls: e.mtls,
      active: e.active,
    }));
  }

  record(endpointId: string, outcome: OutlierOutcome): void {
    if (this.outlier?.record(endpointId, outcome)) this.deps.onEjected(this.service, [endpointId]);
  }

  close(): void {
    clearInterval(this.sweepTimer);
    for (const e of this.endpoints) void e.dispatcher.close().catch(() => undefined);
    this.endpoints = [];
  }

  private build(spec: UpstreamV1, previous: UpstreamV1 | undefined): EndpointPool<RuntimeEndpoint> {
    const old = new Map(this.endpoints.map((e) => [e.key, e]));
    const connectTimeout = spec.timeouts?.connect ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const sameConnect = previous?.timeouts?.connect === spec.timeouts?.connect && previous?.identity === spec.identity;
    const next: RuntimeEndpoint[] = [];
    for (const ep of spec.endpoints) {
      const mtls = spec.mtls !== 'disable' && ep.labels[SIDECAR_LABEL] !== undefined;
      const key = `${ep.address}:${ep.port}:${mtls}`;
      const reuse = sameConnect ? old.get(key) : undefined;
      if (reuse) old.delete(key);
      const dispatcher =
        reuse?.dispatcher ??
        new Pool(`http://${ep.address.includes(':') ? `[${ep.address}]` : ep.address}:${ep.port}`, {
          keepAliveTimeout: 30_000,
          keepAliveMaxTimeout: 60_000,
          connect: connector({ mtls, identity: this.deps.identity, serverSpiffeId: spec.identity, timeoutMs: connectTimeout }),
        });
      next.push({
        id: ep.id,
        weight: ep.weight,
        labels: ep.labels,
        status: ep.status,
        active: reuse?.active ?? 0,
        address: ep.address,
        port: ep.port,
        mtls,
        dispatcher,
        key,
      });
    }
    for (const gone of old.values()) void gone.dispatcher.close().catch(() => undefined);
    this.endpoints = next;

    const od = spec.outlierDetection;
    if (!od) {
      this.outlier = undefined;
      clearInterval(this.sweepTimer);
    } else if (!this.outlier || JSON.stringify(previous?.outlierDetection) !== JSON.stringify(od)) {
      this.outlier = new OutlierDetector(od);
      clearInterval(this.sweepTimer);
      this.sweepTimer = setInterval(() => this.outlier?.sweep(), od.interval);
      this.sweepTimer.unref();
    }
    this.outlier?.setEndpoints(next.map((e) => e.id));
    return new EndpointPool(spec.loadBalancing, spec.subsets, next, {
      ...(this.deps.locality ? { locality: this.deps.locality } : {}),
      ...(this.outlier ? { ejections: this.outlier } : {}),
    });
  }
}
