import { connect as connectTcp, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { SIDECAR_LABEL, type UpstreamV1 } from '@novamesh/contracts';
import {
  type AttemptFailure,
  CircuitBreaker,
  CompiledRetryPolicy,
  DEFAULT_RETRY_BUDGET,
  EndpointPool,
  type FaultSpec,
  type MatchedRoute,
  OutlierDetector,
  type OutlierOutcome,
  type PoolEndpoint,
  parseRetryAfter,
  RETRY_AFTER_CAP_MS,
  RetryBudget,
  type RouteTable,
} from '@novamesh/dataplane';
import { connectMtls } from '@novamesh/identity';
import { type buildConnector, type Dispatcher, Pool } from 'undici';
import { H2Endpoint } from './h2-upstream';
import type { IdentityHolder } from './identity-holder';
import { RawPool } from './raw-pool';

/** One endpoint of an upstream with the connection pool that reaches it. */
export interface RuntimeEndpoint extends PoolEndpoint {
  address: string;
  port: number;
  /** Whether connections originate mutual TLS (the endpoint has a sidecar and the upstream does not disable mTLS). */
  mtls: boolean;
  /** HTTP/1.1 keep-alive pool (HTTP upstreams); undefined for gRPC upstreams. */
  dispatcher: Dispatcher | undefined;
  /** One multiplexed HTTP/2 session (gRPC upstreams); undefined for HTTP upstreams. */
  h2: H2Endpoint | undefined;
  /** Keep-alive sockets of the outbound fast path (HTTP upstreams), same connector as `dispatcher`. */
  raw: RawPool | undefined;
  /** A new connection of its own, same connector (HTTP upstreams): an upgraded request (WebSocket) turns it into a tunnel. */
  open: (() => Socket) | undefined;
  /** address:port:mtls — a pool is reused across snapshots while this stays the same. */
  key: string;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 2_000;
/** Keep-alive of an idle upstream connection when the policy sets no `timeouts.idle`. */
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** undici's default headersTimeout and bodyTimeout: how long a busy upstream connection may stay silent. */
export const DEFAULT_BUSY_TIMEOUT_MS = 300_000;

/**
 * What the resilience layer does to the requests of one route (or of the upstream's requests no
 * route with its own settings matched): compiled once per snapshot, shared by those requests.
 */
export interface RequestPlan {
  /** The whole request, retries and backoff included (route `timeout`, else `timeouts.request`). */
  readonly requestTimeout: number | undefined;
  /** Retries (attempts > 0), route-level ones overriding the TrafficPolicy's. */
  readonly retry: CompiledRetryPolicy | undefined;
  /** The budget the retries draw from: one per distinct retry policy of the upstream (the TrafficPolicy's, a route's own). */
  readonly budget: RetryBudget | undefined;
  readonly fault: FaultSpec | undefined;
}

/** A request's retry state as {@link admitRetry} reads it. */
export interface RetryState {
  /** Tries made so far. */
  attempts: number;
  method: string;
  /** When the request timeout runs out (performance.now() ms; Infinity without one). */
  deadline: number;
  /** The request timeout's timer fired (it may fire a little before the clock says the deadline passed). */
  expired: boolean;
}

/**
 * Whether one more try of a request may go — the one decision both HTTP paths (node:http and the
 * fast path) ask after a retriable response (`response`: its Retry-After and gRPC status) or a
 * failure without one: attempts left, the method rule, a Retry-After within the 30 s cap and the
 * time left, the request timeout not run out, then one of the breaker's `maxRetries` and one retry
 * from the budget, each refusal counted by `refused`. When it may, the breaker's retry slot is
 * taken (give it back with `breaker.retryDone()`), and the result carries the wait the response
 * asked for (undefined: the policy's backoff); else false.
 */
export function admitRetry(
  up: Pick<UpstreamRuntime, 'breaker'>,
  plan: RequestPlan,
  t: RetryState,
  failure: AttemptFailure | undefined,
  response: { retryAfter?: unknown; grpcStatus?: unknown } | undefined,
  refused: (limit: 'maxRetries' | 'retryBudget') => void,
): { retryAfter: number | undefined } | false {
  const { retry, budget } = plan;
  if (!retry || t.attempts > retry.attempts) return false;
  if (!retry.methodAllows(t.method, failure, response?.grpcStatus)) return false;
  const left = t.deadline - performance.now();
  const retryAfter = parseRetryAfter(response?.retryAfter);
  if (retryAfter !== undefined && retryAfter > Math.min(RETRY_AFTER_CAP_MS, left)) return false;
  if (left <= 0 || t.expired) return false;
  const breaker = up.breaker;
  if (breaker && !breaker.tryRetry()) {
    refused('maxRetries');
    return false;
  }
  if (budget && !budget.tryRetry()) {
    breaker?.retryDone();
    refused('retryBudget');
    return false;
  }
  return { retryAfter };
}

export interface ConnectOptions {
  mtls: boolean;
  identity: IdentityHolder;
  serverSpiffeId: string;
  timeoutMs: number;
  alpn: string[];
}

/**
 * A connection to an endpoint: TCP (plaintext endpoints, or mTLS endpoints before this sidecar has
 * a certificate, which a permissive upstream still accepts) or mutual TLS with the identity's
 * current certificate, verifying the server's SPIFFE ID. Errors carry `meshStage` (`connect` or
 * `tls`) so callers can say which part failed; a connect timeout destroys the socket.
 */
export function openSocket(opts: ConnectOptions, host: string, port: number): { socket: Socket; tls: boolean } {
  const tls = opts.mtls && opts.identity.ready;
  const socket: Socket | TLSSocket = tls
    ? connectMtls(opts.identity, { host, port, serverSpiffeId: opts.serverSpiffeId, minVersion: 'TLSv1.3', ALPNProtocols: opts.alpn })
    : connectTcp({ host, port });
  socket.setNoDelay(true);
  let tcpUp = false;
  let ready = false;
  socket.once('connect', () => {
    tcpUp = true;
  });
  // Only a failure before the connection is up is one of connecting (or of the handshake): the
  // request never left, so even a POST may be retried. One later (a reset, the upstream closing
  // mid-request) carries no stage, and counts as a reset; except a TLS alert, which TLS 1.3 servers
  // send after the client's handshake is done (a refused client certificate): the request was
  // never read.
  socket.once('error', (err: NodeJS.ErrnoException) => {
    const alert = tls && /^ERR_SSL_.*ALERT/.test(err.code ?? '');
    if (!ready || alert) (err as Error & { meshStage?: string }).meshStage = tcpUp && tls ? 'tls' : 'connect';
  });
  const timer = setTimeout(() => {
    socket.destroy(Object.assign(new Error(`connect timeout after ${opts.timeoutMs} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' }));
  }, opts.timeoutMs);
  socket.once(tls ? 'secureConnect' : 'connect', () => {
    ready = true;
    clearTimeout(timer);
  });
  socket.once('close', () => clearTimeout(timer));
  return { socket, tls };
}

/** The undici connector over {@link openSocket}: hands the socket over once it is connected (and secured). */
function connector(opts: ConnectOptions): buildConnector.connector {
  return (o, cb) => {
    const { socket, tls } = openSocket(opts, o.hostname, Number(o.port));
    const onError = (err: Error) => cb(err, null);
    socket.once('error', onError);
    socket.once(tls ? 'secureConnect' : 'connect', () => {
      socket.off('error', onError);
      cb(null, socket);
    });
  };
}

function closeTransport(e: Pick<RuntimeEndpoint, 'dispatcher' | 'h2' | 'raw'>): void {
  void e.dispatcher?.close().catch(() => undefined);
  e.h2?.close();
  e.raw?.close();
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
  /** Circuit breaker of the upstream; undefined without `circuitBreaking`. Kept across snapshots while its limits stay the same. */
  breaker: CircuitBreaker | undefined;
  /**
   * Whether any timeout, retry, fault or circuit breaker applies: false keeps requests on the plain
   * path, which costs what it did before these existed.
   */
  resilient = false;
  private defaultPlan: RequestPlan | undefined;
  private routePlans = new Map<MatchedRoute, RequestPlan>();
  private budgets = new Map<string, RetryBudget>();
  private endpoints: RuntimeEndpoint[] = [];
  private sweepTimer: NodeJS.Timeout | undefined;

  /** `routes` is `spec`'s compiled route table (the data plane compiles every table before applying any). */
  constructor(
    spec: UpstreamV1,
    routes: RouteTable,
    private readonly deps: { identity: IdentityHolder; locality?: string; onEjected: (service: string, ids: string[]) => void },
  ) {
    this.spec = spec;
    this.routes = routes;
    this.pool = this.build(spec, undefined);
    this.plan(spec, undefined);
  }

  get service(): string {
    return this.spec.service;
  }

  /** Applies a new snapshot's view of this upstream; pools of unchanged endpoints are kept, others closed gracefully. */
  update(spec: UpstreamV1, routes: RouteTable): void {
    const previous = this.spec;
    this.spec = spec;
    this.routes = routes;
    this.pool = this.build(spec, previous);
    this.plan(spec, previous);
  }

  /** The plan for a request that matched `route` (or none). Only meaningful while `resilient`. */
  planFor(route: MatchedRoute | undefined): RequestPlan {
    return (route && this.routePlans.get(route)) || (this.defaultPlan as RequestPlan);
  }

  /** Compiles the per-request plans and the circuit breaker of a snapshot's view of the upstream. */
  private plan(spec: UpstreamV1, previous: UpstreamV1 | undefined): void {
    const cb = spec.circuitBreaking;
    if (!cb) this.breaker = undefined;
    else if (!this.breaker || JSON.stringify(previous?.circuitBreaking) !== JSON.stringify(cb)) this.breaker = new CircuitBreaker(cb);
    // Budgets outlive snapshots (endpoint changes come often) while their retry policy stays the same.
    const budgets = new Map<string, RetryBudget>();
    const make = (timeout: number | undefined, retries: UpstreamV1['retries'], fault: FaultSpec | undefined): RequestPlan => {
      const retry = retries && retries.attempts > 0 ? new CompiledRetryPolicy(retries) : undefined;
      if (!retry) return { requestTimeout: timeout, retry, budget: undefined, fault };
      const key = JSON.stringify(retries);
      const budget = budgets.get(key) ?? this.budgets.get(key) ?? new RetryBudget(retries?.budget ?? DEFAULT_RETRY_BUDGET);
      budgets.set(key, budget);
      return { requestTimeout: timeout, retry, budget, fault };
    };
    const base = make(spec.timeouts?.request, spec.retries, undefined);
    this.defaultPlan = base;
    this.routePlans = new Map();
    let resilient = base.requestTimeout !== undefined || base.retry !== undefined || this.breaker !== undefined;
    for (const r of this.routes.routes) {
      if (r.timeout === undefined && r.retries === undefined && r.fault === undefined) continue;
      // A route's own retries get their own budget; otherwise it shares the upstream's.
      const own = r.retries ? make(r.timeout ?? base.requestTimeout, r.retries, r.fault) : undefined;
      this.routePlans.set(r, own ?? { ...base, requestTimeout: r.timeout ?? base.requestTimeout, fault: r.fault });
      resilient = true;
    }
    this.budgets = budgets;
    this.resilient = resilient;
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
    for (const e of this.endpoints) closeTransport(e);
    this.endpoints = [];
  }

  /**
   * How one endpoint is reached: an undici keep-alive pool (HTTP/1.1), or for a gRPC upstream one
   * HTTP/2 session — over mutual TLS with ALPN h2 to a sidecar, or without TLS (h2c) otherwise.
   */
  private transportFor(
    spec: UpstreamV1,
    ep: { address: string; port: number },
    mtls: boolean,
    timeoutMs: number,
  ): Pick<RuntimeEndpoint, 'dispatcher' | 'h2' | 'raw' | 'open'> {
    const idle = spec.timeouts?.idle ?? DEFAULT_IDLE_TIMEOUT_MS;
    const origin = `http://${ep.address.includes(':') ? `[${ep.address}]` : ep.address}:${ep.port}`;
    const opts = { mtls, identity: this.deps.identity, serverSpiffeId: spec.identity, timeoutMs };
    if (spec.type === 'grpc') {
      return {
        dispatcher: undefined,
        h2: new H2Endpoint(origin, () => openSocket({ ...opts, alpn: ['h2'] }, ep.address, ep.port).socket),
        raw: undefined,
        open: undefined,
      };
    }
    const dispatcher = new Pool(origin, {
      keepAliveTimeout: idle,
      keepAliveMaxTimeout: Math.max(idle, 60_000),
      // timeouts.idle also cuts a response whose body stalls that long (Envoy's stream idle timeout).
      ...(spec.timeouts?.idle ? { bodyTimeout: spec.timeouts.idle } : {}),
      // No endpoint ever holds more than the cluster may (the breaker caps requests in flight across endpoints).
      ...(spec.circuitBreaking?.maxConnections ? { connections: spec.circuitBreaking.maxConnections } : {}),
      connect: connector({ ...opts, alpn: ['http/1.1'] }),
    });
    const keepAliveMax = Math.max(idle, 60_000);
    const raw = new RawPool(
      () => openSocket({ ...opts, alpn: ['http/1.1'] }, ep.address, ep.port),
      idle,
      keepAliveMax,
      spec.timeouts?.idle ?? DEFAULT_BUSY_TIMEOUT_MS,
    );
    const open = () => openSocket({ ...opts, alpn: ['http/1.1'] }, ep.address, ep.port).socket;
    return { dispatcher, h2: undefined, raw, open };
  }

  private build(spec: UpstreamV1, previous: UpstreamV1 | undefined): EndpointPool<RuntimeEndpoint> {
    const old = new Map(this.endpoints.map((e) => [e.key, e]));
    const connectTimeout = spec.timeouts?.connect ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const sameConnect =
      previous?.timeouts?.connect === spec.timeouts?.connect &&
      previous?.timeouts?.idle === spec.timeouts?.idle &&
      previous?.circuitBreaking?.maxConnections === spec.circuitBreaking?.maxConnections &&
      previous?.identity === spec.identity;
    const next: RuntimeEndpoint[] = [];
    for (const ep of spec.endpoints) {
      const mtls = spec.mtls !== 'disable' && ep.labels[SIDECAR_LABEL] !== undefined;
      const key = `${ep.address}:${ep.port}:${mtls}:${spec.type}`;
      const reuse = sameConnect ? old.get(key) : undefined;
      if (reuse) old.delete(key);
      if (reuse?.id === ep.id) {
        // The same endpoint goes on as the same object: requests in flight decrement the `active`
        // count the balancers of the new snapshot read (a copy would keep their increments for
        // good, and least-request would avoid the endpoint ever after).
        Object.assign(reuse, { weight: ep.weight, labels: ep.labels, status: ep.status });
        next.push(reuse);
        continue;
      }
      // Another endpoint at that address (a restarted workload, a new id): the connections go on,
      // the in-flight count and the outcomes of requests still running stay with the old one.
      const transport = reuse ?? this.transportFor(spec, ep, mtls, connectTimeout);
      next.push({
        id: ep.id,
        weight: ep.weight,
        labels: ep.labels,
        status: ep.status,
        active: 0,
        address: ep.address,
        port: ep.port,
        mtls,
        dispatcher: transport.dispatcher,
        h2: transport.h2,
        raw: transport.raw,
        open: transport.open,
        key,
      });
    }
    for (const gone of old.values()) closeTransport(gone);
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
