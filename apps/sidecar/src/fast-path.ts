import { randomUUID } from 'node:crypto';
import { type Server as HttpServer, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import {
  type AttemptFailure,
  type CircuitBreaker,
  decideFault,
  type FaultDecision,
  isIdempotent,
  type MatchedRoute,
  type OutlierOutcome,
  outcomeOfStatus,
  type PendingAdmission,
  type RequestView,
} from '@novamesh/dataplane';
import type { AccessRecord } from './access-log';
import {
  classifyUpstreamError,
  connectionNamed,
  type DownstreamRequest,
  failureOfError,
  forwardableHeaders,
  HOP_BY_HOP,
  MAX_RETRY_BODY_BYTES,
  splitUrl,
  timeoutError,
  workloadFailure,
} from './forward';
import {
  ChunkedScanner,
  type HeadError,
  hostProblem,
  parseRequestHead,
  parseResponseHead,
  type RequestHead,
  type ResponseHead,
} from './http1-wire';
import { overloadedReason } from './in-flight';
import {
  ERROR_HEADER,
  FAULT_HEADER,
  headerLines,
  jsonReplyBytes,
  LOCAL_REPLIES,
  type LocalReplyCode,
  localReplyBytes,
  REASON_HEADER,
  utcDate,
} from './local-reply';
import type { SidecarMetrics } from './metrics';
import { endAndLinger, REQUEST_TIMEOUT_REPLY } from './protocol-listener';
import { socketClosedError, type UpstreamConnection, type UpstreamUser } from './raw-pool';
import { isWebSocketUpgrade } from './upgrade';
import { admitRetry, type RequestPlan, type RuntimeEndpoint, type UpstreamRuntime } from './upstream-runtime';

const CLOSE_HEADERS = 'Connection: close\r\n';
/** Pipelined bytes kept while a request is in flight before the client socket is paused. */
const MAX_BUFFERED = 64 * 1024;
/** Below this, a head and the body bytes after it go out in one buffer (one write). */
const COALESCE_BYTES = 16 * 1024;

const EXPECTS_PAYLOAD = new Set(['POST', 'PUT', 'PATCH']);

/** What the fast path needs of its listener (the outbound proxy, or the inbound listener). */
export interface FastPathHost {
  /** Metrics and access log of one request, as the slow path writes them. */
  log(r: {
    started: number;
    method: string;
    path: string;
    upstream: string;
    requestId: string;
    status: number;
    error?: string | undefined;
    reason?: string | undefined;
    extra?: Partial<AccessRecord> | undefined;
  }): void;
  /** Admits one request (the in-flight bound) or counts it shed. */
  admit(): boolean;
  release(): void;
  /** Counts a request the fast path handles, or a connection it hands over (with why). */
  counted(handoff?: string): void;
  /** SIDECAR_MAX_IN_FLIGHT, for the OVERLOADED reason. */
  maxInFlight(): number;
  /** The sidecar's metrics (retries, circuit breaker overflows, injected faults of resilient upstreams). */
  metrics(): SidecarMetrics;
}

/** Where the outbound fast path sends requests: the mesh's upstreams, by routing. */
export interface OutboundTarget {
  kind: 'outbound';
  upstreams: () => ReadonlyMap<string, UpstreamRuntime> | undefined;
  /** The service and path a request is for (outbound.ts `serviceOfRequest`). */
  serviceOf(req: Pick<DownstreamRequest, 'url' | 'headers'>): { service?: string; path: string; authority?: string };
  /** The service of a per-upstream listener; undefined for the mesh-wide one. */
  fixed: string | undefined;
}

/** The endpoint an exchange uses: one of an upstream's, or the inbound side's workload. */
export type FastEndpoint = Pick<RuntimeEndpoint, 'id' | 'raw' | 'active'>;

/** What a {@link DirectTarget} decided for one request, after admission (the inbound side's checks). */
export interface DirectDecision {
  /** The sidecar's own answer instead (MTLS_REQUIRED, RBAC_DENIED, RATE_LIMITED…): `headers` added, `status` replacing the code's; `logReason` false: the access log has no reason. */
  reply?:
    | { code: LocalReplyCode; reason: string; headers?: Record<string, string> | undefined; status?: number; logReason?: boolean }
    | undefined;
  /** The request headers for the workload (when there is no reply). */
  headers?: Record<string, string | string[]> | undefined;
  /** Set on the response over the workload's (RateLimit-* of an admitting limit). */
  responseHeaders?: Record<string, string> | undefined;
  /** More access-log fields (peer, audit). */
  extra?: Partial<AccessRecord> | undefined;
}

/**
 * Where the inbound fast path sends requests: one endpoint (the workload, no routing, no
 * resilience), once `decide` let a request through; a promise when it must wait (a global rate limit).
 */
export interface DirectTarget {
  kind: 'direct';
  decide(head: RequestHead, socket: Socket, path: string, query: string): DirectDecision | Promise<DirectDecision>;
  endpoint: FastEndpoint;
  /** The reason of the local reply (APP_UNAVAILABLE, UPSTREAM_RESET, UPSTREAM_TIMEOUT) when the workload failed before any response byte. */
  failed(reason: string): string;
}

/**
 * The outbound listener's HTTP/1.1 fast path: per client connection, request heads are parsed
 * here, and an eligible request (HTTP/1.1, not CONNECT, no Upgrade or Expect, not gRPC, an HTTP
 * upstream, a route without mirror; on a route that retries, no body or a Content-Length body of
 * at most 64 KiB that has fully arrived) goes to the chosen endpoint over a pooled keep-alive
 * socket: the same routing, header changes, metrics, access log, outlier recording and local
 * replies as the node:http path, without its per-request objects. Resilient upstreams get the
 * slow path's timeouts, circuit breaking, fault injection and retries (see {@link Tries}). The
 * first request that is not eligible hands the connection, at that request boundary, to the
 * node:http server, where it stays. Pipelined requests are answered in order, one at a time.
 */
export class FastPath {
  private readonly connections = new Set<FastConnection>();
  closing = false;
  /**
   * The Connection lines of a response that keeps the connection: the node:http server's
   * keepAliveTimeout (SIDECAR_IDLE_TIMEOUT) in whole seconds rounded down, as node:http writes it, so
   * both paths advertise the same and never more than the connection is kept (under 1 s: `timeout=0`).
   */
  readonly keepAliveHeaders: string;

  constructor(
    readonly host: FastPathHost,
    readonly http1: HttpServer,
    readonly target: OutboundTarget | DirectTarget,
  ) {
    this.keepAliveHeaders = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(http1.keepAliveTimeout / 1000)}\r\n`;
  }

  accept(socket: Socket): void {
    const conn = new FastConnection(this, socket);
    this.connections.add(conn);
  }

  /** @internal */
  forget(conn: FastConnection): void {
    this.connections.delete(conn);
  }

  /** Draining: idle connections close now, the others after their current response. */
  closeIdle(): void {
    this.closing = true;
    for (const c of this.connections) c.closeIfIdle();
  }
}

/** One client connection on the fast path. */
class FastConnection {
  /** Bytes received and not consumed yet (the next request heads, or body bytes not forwarded yet). */
  buf: Buffer | undefined;
  exchange: Exchange | undefined;
  gone = false;
  private advancing = false;
  /** Armed while a head is incomplete: its 408 when it is still incomplete after the headers timeout. */
  private headTimer: NodeJS.Timeout | undefined;
  private pausedForBuffer = false;

  constructor(
    readonly fp: FastPath,
    readonly socket: Socket,
  ) {
    socket.on('data', this.onData);
    socket.on('close', this.onClose);
    socket.on('drain', this.onDrain);
    socket.on('timeout', this.onTimeout);
    socket.setTimeout(fp.http1.keepAliveTimeout);
  }

  private readonly onData = (chunk: Buffer) => {
    const ex = this.exchange;
    if (ex?.readsBody()) {
      if (this.buf !== undefined) {
        this.append(chunk);
        this.pumpBody();
        return;
      }
      const rest = ex.takeBody(chunk);
      if (rest !== undefined) this.append(rest);
      ex.afterBody();
      return;
    }
    this.append(chunk);
    if (this.exchange === undefined) this.advance();
    else if ((this.buf?.length ?? 0) > MAX_BUFFERED && !this.pausedForBuffer) {
      this.pausedForBuffer = true;
      this.socket.pause();
    }
  };

  private append(chunk: Buffer): void {
    this.buf = this.buf === undefined ? chunk : Buffer.concat([this.buf, chunk]);
  }

  private readonly onClose = () => {
    this.gone = true;
    this.stopHeadTimer();
    this.fp.forget(this);
    this.exchange?.clientGone();
  };

  private readonly onDrain = () => this.exchange?.clientDrained();

  private readonly onTimeout = () => {
    if (this.exchange === undefined) this.socket.destroy();
    else this.socket.setTimeout(this.fp.http1.keepAliveTimeout); // requests have no time limit (requestTimeout 0): re-armed
  };

  private readonly onHeadTimeout = () => {
    this.headTimer = undefined;
    if (this.gone || this.exchange !== undefined) return;
    this.close(REQUEST_TIMEOUT_REPLY);
  };

  private stopHeadTimer(): void {
    clearTimeout(this.headTimer);
    this.headTimer = undefined;
  }

  closeIfIdle(): void {
    if (this.exchange === undefined) this.socket.destroy();
  }

  /** Feeds buffered body bytes to the exchange (when it can take them now). */
  pumpBody(): void {
    const ex = this.exchange;
    const buf = this.buf;
    if (ex === undefined || buf === undefined || !ex.readsBody()) return;
    this.buf = undefined;
    const rest = ex.takeBody(buf);
    if (rest !== undefined) this.buf = this.buf === undefined ? rest : Buffer.concat([rest, this.buf]);
    ex.afterBody();
  }

  /** The exchange is over (response sent, request body read): the next request, or close. */
  finished(ex: Exchange, keepAlive: boolean): void {
    if (this.exchange !== ex) return;
    this.exchange = undefined;
    if (this.gone) return;
    if (!keepAlive || this.fp.closing) {
      this.close();
      return;
    }
    if (this.socket.isPaused()) this.socket.resume();
    this.pausedForBuffer = false;
    if (!this.advancing) this.advance();
  }

  /** Takes the next requests from the buffer while nothing is in flight. */
  advance(): void {
    this.advancing = true;
    try {
      while (this.exchange === undefined && !this.gone && this.buf !== undefined) {
        const buf = this.buf;
        const head = parseRequestHead(buf, 0);
        if (head === undefined) {
          // A head trickling in (slowloris) or stalled is cut as node:http's headersTimeout cuts it,
          // counted from its first bytes (SIDECAR_HEADERS_TIMEOUT, the node:http server's setting).
          if (this.headTimer === undefined && this.fp.http1.headersTimeout > 0)
            this.headTimer = setTimeout(this.onHeadTimeout, this.fp.http1.headersTimeout);
          break;
        }
        if (this.headTimer !== undefined) this.stopHeadTimer();
        if ('error' in head) {
          // The inbound side leaves malformed requests to node:http (its 400, as the slow path answers them).
          if (this.fp.target.kind === 'direct') this.handOff('malformed');
          else this.refuse(head);
          return;
        }
        const plan = planRequest(this.fp, head, this.socket, buf);
        if (typeof plan === 'string') {
          this.handOff(plan);
          return;
        }
        const end = plan.payload === undefined ? head.size : head.size + plan.payload.length;
        this.buf = end < buf.length ? buf.subarray(end) : undefined;
        const ex = new Exchange(this, head, plan);
        this.exchange = ex;
        ex.start();
        this.pumpBody();
      }
    } finally {
      this.advancing = false;
    }
    if (this.pausedForBuffer && this.exchange === undefined && !this.gone) {
      this.pausedForBuffer = false;
      this.socket.resume();
    }
  }

  /**
   * Ends the connection after `reply` (or after the response already written): nothing more is
   * parsed or buffered, and {@link endAndLinger} drops what the client still sends and cuts it if it
   * does not close. So a client that keeps sending after its request was refused (or after a
   * `Connection: close` response) holds neither memory nor, for long, the socket (the node:http
   * path ends a connection after a parse error the same way).
   */
  private close(reply?: string | Buffer): void {
    this.gone = true;
    this.fp.forget(this);
    this.stopHeadTimer();
    this.buf = undefined;
    this.socket.off('data', this.onData);
    endAndLinger(this.socket, reply);
  }

  /** A request the parser refused: the local reply (`Connection: close`), then the connection closes (as llhttp errors do). */
  private refuse(e: HeadError): void {
    const started = performance.now();
    const reason = `malformed request: ${e.reason}`;
    this.close(localReplyBytes(e.error, 'BAD_REQUEST', reason, CLOSE_HEADERS, false));
    this.fp.host.log({ started, method: '', path: '', upstream: '', requestId: '', status: e.error, error: 'BAD_REQUEST', reason });
  }

  /** Hands the connection to the node:http server at this request boundary, bytes not consumed put back. */
  private handOff(reason: string): void {
    const socket = this.socket;
    this.fp.host.counted(reason);
    this.gone = true;
    this.fp.forget(this);
    socket.off('data', this.onData);
    socket.off('close', this.onClose);
    socket.off('drain', this.onDrain);
    socket.off('timeout', this.onTimeout);
    socket.setTimeout(0);
    socket.pause();
    if (this.buf !== undefined) socket.unshift(this.buf);
    this.buf = undefined;
    this.fp.http1.emit('connection', socket);
    process.nextTick(() => socket.resume());
  }
}

/** Where an eligible request goes, or the local reply it gets. */
interface Plan {
  started: number;
  target: { service?: string; path: string; authority?: string };
  path: string;
  query: string;
  requestId: string;
  up: UpstreamRuntime | undefined;
  view: RequestView | undefined;
  route: MatchedRoute | undefined;
  /** `logReason` false: the access log has no reason (as the slow path logs that reply). */
  reply: { code: LocalReplyCode; reason: string; logReason?: false } | undefined;
  /** A retrying route's request body, complete (kept to send it again on a retry). */
  payload: Buffer | undefined;
  /** The inbound side: where the request goes once its checks let it through. */
  direct: DirectTarget | undefined;
}

/**
 * Whether the fast path takes this request (a string: why not — the connection goes to node:http),
 * and the routing decisions made on the way, in the slow path's order.
 */
function planRequest(fp: FastPath, head: RequestHead, socket: Socket, buf: Buffer): Plan | string {
  const h = head.headers;
  if (head.minor !== 1) return 'http/1.0';
  if (head.method === 'CONNECT') return 'connect';
  // WebSocket upgrades become tunnels on the node:http path; any other Upgrade is ignored (hop-by-hop).
  if (h.upgrade !== undefined && isWebSocketUpgrade(h)) return 'upgrade';
  if (h.expect !== undefined) return 'expect';
  if (h.host === undefined) return 'no-host';
  if (hostProblem(h.host) !== undefined) return 'bad-host';
  if (typeof h['content-type'] === 'string' && h['content-type'].startsWith('application/grpc')) return 'grpc';
  if (head.framing === 'chunked' && h['transfer-encoding']?.toLowerCase() !== 'chunked') return 'transfer-coding';
  const started = performance.now();
  const t = fp.target;
  if (t.kind === 'direct') {
    // The workload is asked for the origin-form target only (anything else: node:http and undici judge it).
    if (head.url.charCodeAt(0) !== 47 /* / */) return 'target-form';
    const { path, query } = splitUrl(head.url);
    return {
      started,
      target: { path: head.url },
      path,
      query,
      requestId: '',
      up: undefined,
      view: undefined,
      route: undefined,
      reply: undefined,
      payload: undefined,
      direct: t,
    };
  }
  const target = t.fixed ? { ...t.serviceOf({ url: head.url, headers: h }), service: t.fixed } : t.serviceOf({ url: head.url, headers: h });
  const { path, query } = splitUrl(target.path);
  const requestId = (h['x-request-id'] as string | undefined) ?? randomUUID();
  const plan: Plan = {
    started,
    target,
    path,
    query,
    requestId,
    up: undefined,
    view: undefined,
    route: undefined,
    reply: undefined,
    payload: undefined,
    direct: undefined,
  };
  const upstreams = t.upstreams();
  if (!upstreams) plan.reply = { code: 'NO_SNAPSHOT', reason: 'this sidecar has not received its configuration yet', logReason: false };
  else if (!target.service)
    plan.reply = { code: 'BAD_REQUEST', reason: 'no service named: call http://<service>.mesh/ (Host header or absolute URL)' };
  else {
    const up = upstreams.get(target.service);
    if (!up) {
      const reason = `"${target.service}" is not a service this sidecar may call (known: ${[...upstreams.keys()].join(', ') || 'none'})`;
      plan.reply = { code: 'NO_ROUTE', reason };
    } else {
      if (up.spec.type === 'grpc') return 'grpc-upstream';
      const view: RequestView = { method: head.method, path, query, headers: h };
      if (socket.remoteAddress) view.sourceIp = socket.remoteAddress;
      const route = up.routes.match(view);
      if (route?.mirror) return 'mirror';
      if (up.resilient && head.framing !== 'none' && up.planFor(route).retry) {
        // A retry sends the body again: only one that is here whole and small enough to keep (else node:http streams and keeps it).
        const length = head.contentLength;
        if (head.framing !== 'length' || length > MAX_RETRY_BODY_BYTES || buf.length - head.size < length) return 'retry-body';
        plan.payload = buf.subarray(head.size, head.size + length);
      }
      plan.up = up;
      plan.view = view;
      plan.route = route;
    }
  }
  return plan;
}

/** A head and the first body bytes as one buffer when small, else as two writes. */
function writeWithHead(socket: Socket, head: string, body: Buffer | undefined): boolean {
  if (body === undefined || body.length === 0) return socket.write(head, 'latin1');
  if (body.length <= COALESCE_BYTES) {
    const out = Buffer.allocUnsafe(Buffer.byteLength(head, 'latin1') + body.length);
    const n = out.write(head, 'latin1');
    body.copy(out, n);
    return socket.write(out);
  }
  socket.cork();
  socket.write(head, 'latin1');
  const ok = socket.write(body);
  socket.uncork();
  return ok;
}

const CHUNK_END = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

/** One request on the fast path, from its head to the end of its response and of its body. */
class Exchange implements UpstreamUser {
  private readonly socket: Socket;
  /** Where request body bytes go: nowhere yet (connecting), upstream, or dropped (a local reply, or a response already complete). */
  private sink: 'wait' | 'upstream' | 'discard' = 'wait';
  private bodyLeft: number;
  private readonly scanner: ChunkedScanner | undefined;
  private bodyDone: boolean;
  private bodyForwarded = false;
  /** The upstream socket is full: the client is paused until it drains. */
  private upstreamFull = false;
  private responseDone = false;
  /** Holds an in-flight slot (released when accounted). */
  private admitted = false;
  /** Metrics and log written, slot and endpoint count released: once per request. */
  private accounted = false;
  private endpoint: FastEndpoint | undefined;
  /** The endpoint whose in-flight count this exchange holds (one try at a time). */
  private activeOn: FastEndpoint | undefined;
  /** Direct targets: what the checks decided (access-log fields, response headers to add). */
  private decision: DirectDecision | undefined;
  /** Resilient upstreams only: the request's timeouts, breaker slot, fault and tries. */
  private rs: Tries | undefined;
  /** Tries started (a connection acquired for an earlier one is not used). */
  private tryNo = 0;
  private upstream: UpstreamConnection | undefined;
  private upstreamHead = '';
  private retried = false;
  private resBuf: Buffer | undefined;
  private res: ResponseHead | undefined;
  private resLeft = 0;
  private resScanner: ChunkedScanner | undefined;
  /** The upstream sent bytes past the response: its connection is not reused. */
  private resDirty = false;
  private status = 0;
  private keepAlive: boolean;

  constructor(
    private readonly conn: FastConnection,
    private readonly head: RequestHead,
    private readonly plan: Plan,
  ) {
    this.socket = conn.socket;
    this.bodyLeft = head.framing === 'length' && plan.payload === undefined ? head.contentLength : 0;
    this.scanner = head.framing === 'chunked' ? new ChunkedScanner() : undefined;
    this.bodyDone = head.framing === 'none' || plan.payload !== undefined;
    this.keepAlive = head.keepAlive;
  }

  private get host(): FastPathHost {
    return this.conn.fp.host;
  }

  private extra(): Partial<AccessRecord> {
    if (this.plan.direct !== undefined) return this.decision?.extra ?? {};
    const route = this.plan.route;
    const rs = this.rs;
    if (rs !== undefined) {
      // The slow path's fields: before the first try, the route and the fault only.
      const routeName = this.routeName();
      if (rs.attempts === 0) return { route: routeName, fault: rs.fault };
      return {
        endpoint: this.endpoint?.id,
        route: routeName,
        ...(rs.attempts > 1 ? { attempts: rs.attempts } : {}),
        ...(rs.fault ? { fault: rs.fault } : {}),
      };
    }
    return { endpoint: this.endpoint?.id, route: route ? `${route.rule}/${route.name}` : undefined };
  }

  /** Gives up the in-flight count held on the endpoint, recording the try's outcome for outlier detection (none: the client went away). */
  private leaveEndpoint(outcome: OutlierOutcome | undefined): void {
    const endpoint = this.activeOn;
    if (endpoint === undefined) return;
    this.activeOn = undefined;
    endpoint.active--;
    if (outcome) this.plan.up?.record(endpoint.id, outcome);
  }

  /** The slow path's bookkeeping, in its order: the endpoint's active count, outlier detection, metrics and log, the in-flight slot. */
  private account(status: number, error?: string, reason?: string, extra?: Partial<AccessRecord>, outcome?: OutlierOutcome): void {
    if (this.accounted) return;
    this.accounted = true;
    this.leaveEndpoint(outcome);
    if (this.rs !== undefined) this.rsDone(this.rs);
    const p = this.plan;
    this.host.log({
      started: p.started,
      method: this.head.method,
      path: p.path,
      upstream: p.target.service ?? '',
      requestId: p.requestId,
      status,
      error,
      reason,
      extra,
    });
    if (this.admitted) this.host.release();
  }

  start(): void {
    const { plan } = this;
    this.host.counted();
    if (!this.host.admit()) {
      this.accounted = true; // shed: counted by the in-flight limit, not logged (as the guard does)
      this.localReply('OVERLOADED', overloadedReason(this.host.maxInFlight()));
      return;
    }
    this.admitted = true;
    if (plan.reply) {
      this.account(LOCAL_REPLIES[plan.reply.code], plan.reply.code, plan.reply.logReason === false ? undefined : plan.reply.reason);
      this.localReply(plan.reply.code, plan.reply.reason);
      return;
    }
    if (plan.direct !== undefined) {
      const direct = plan.direct;
      const decision = direct.decide(this.head, this.socket, plan.path, plan.query);
      if (decision instanceof Promise)
        decision.then(
          (d) => this.decided(direct, d),
          () => this.socket.destroy(), // nothing sane to answer: the connection is cut (clientGone accounts it)
        );
      else this.decided(direct, decision);
      return;
    }
    const up = plan.up as UpstreamRuntime;
    const route = plan.route;
    const subset = route?.pickSubset();
    const endpoint = up.pool.pick(plan.view as RequestView, subset);
    if (!endpoint?.raw) {
      const reason = `no healthy endpoint of ${up.service}${subset ? ` in subset ${subset}` : ''}${up.outlier?.ejectedEndpoints ? ` (${up.outlier.ejectedEndpoints} ejected)` : ''}`;
      this.account(503, 'NO_HEALTHY_UPSTREAM', reason, { route: route ? `${route.rule}/${route.name}` : undefined });
      this.localReply('NO_HEALTHY_UPSTREAM', reason);
      return;
    }
    const headers = forwardableHeaders(this.head.headers);
    if (plan.target.authority !== undefined) headers.host = plan.target.authority; // RFC 9112 §3.2.2: the URL's authority is the host
    headers['x-request-id'] = plan.requestId;
    if (route?.requestHeaders) route.applyRequestHeaders(headers);
    const upstreamPath = route ? `${route.rewritePath(plan.path)}${plan.query ? `?${plan.query}` : ''}` : plan.target.path;
    this.upstreamHead = this.requestHead(upstreamPath, headers);
    this.endpoint = endpoint;
    if (up.resilient) {
      this.rs = new Tries(up.planFor(route), plan.started, subset, up.breaker, this.host.metrics());
      this.faultThenAdmit();
      return;
    }
    this.activeOn = endpoint;
    endpoint.active++;
    this.connect();
  }

  /** The request head for the upstream, as undici writes it (keep-alive, the body's framing). */
  private requestHead(path: string, headers: Record<string, string | string[]>): string {
    let text = `${this.head.method} ${path} HTTP/1.1\r\n`;
    // The framing is the one this sidecar parsed and forwards the body by, whatever the headers
    // say now (a Connection nomination or a header change must not make the body a second request).
    for (const name in headers) if (name !== 'content-length' && name !== 'transfer-encoding') text += headerLines(name, headers[name]);
    text += 'connection: keep-alive\r\n';
    const framing = this.head.framing;
    if (framing === 'chunked') text += 'transfer-encoding: chunked\r\n';
    else if (framing === 'length') text += `content-length: ${this.head.contentLength}\r\n`;
    else if (EXPECTS_PAYLOAD.has(this.head.method) || this.head.headers['content-length'] !== undefined) text += 'content-length: 0\r\n';
    return `${text}\r\n`;
  }

  /** A direct target's checks decided (at once, or after a global rate limit answered): the local reply, or the workload. */
  private decided(direct: DirectTarget, d: DirectDecision): void {
    if (this.accounted) return; // the client went away meanwhile
    this.decision = d;
    const reply = d.reply;
    if (reply !== undefined) {
      const status = reply.status ?? LOCAL_REPLIES[reply.code];
      this.account(status, reply.code, reply.logReason === false ? undefined : reply.reason, this.extra());
      this.localReply(reply.code, reply.reason, reply.headers, status);
      return;
    }
    this.upstreamHead = this.requestHead(this.head.url, d.headers ?? {});
    const endpoint = direct.endpoint;
    this.endpoint = endpoint;
    this.activeOn = endpoint;
    endpoint.active++;
    this.connect();
  }

  /** Takes a pooled connection (or opens one) and sends the head with the body bytes already here. */
  private connect(): void {
    this.sink = 'wait';
    // Until the upstream is there, the client's body bytes wait in the connection's buffer.
    if (!this.bodyDone) this.socket.pause();
    const tryNo = this.tryNo;
    (this.endpoint as FastEndpoint).raw?.acquire((err, upstream) => {
      if (tryNo !== this.tryNo) {
        upstream?.release(undefined); // that try ended meanwhile (its timeout)
        return;
      }
      if (err || !upstream) return this.upstreamFailed(err ?? new Error('no connection'));
      if (this.accounted) {
        upstream.release(undefined); // the client went away meanwhile
        return;
      }
      this.upstream = upstream;
      upstream.take(this);
      this.sink = 'upstream';
      const first = this.conn.buf;
      if (first !== undefined && !this.bodyDone) {
        this.conn.buf = undefined;
        const rest = this.takeBody(first, true);
        if (rest !== undefined) this.conn.buf = this.conn.buf === undefined ? rest : Buffer.concat([rest, this.conn.buf]);
      } else if (this.plan.payload !== undefined) {
        // Sent: a failure of this connection is the retry policy's to judge (not the reused-connection retry).
        this.bodyForwarded = this.plan.payload.length > 0;
        writeWithHead(upstream.socket, this.upstreamHead, this.plan.payload);
      } else upstream.socket.write(this.upstreamHead, 'latin1');
      if (!this.bodyDone && !this.upstreamFull && !this.conn.gone) this.socket.resume();
    });
  }

  /** Whether body bytes the client sends now can be taken (else they are buffered). */
  readsBody(): boolean {
    return !this.bodyDone && this.sink !== 'wait';
  }

  /** Consumes the body bytes at the start of `chunk` (forwarded or dropped); returns the bytes after the body's end. */
  takeBody(chunk: Buffer, withHead = false): Buffer | undefined {
    let end: number;
    if (this.scanner) {
      try {
        const r = this.scanner.feed(chunk, 0);
        end = r < 0 ? chunk.length : r;
      } catch (e) {
        this.badBody((e as Error).message);
        return undefined;
      }
      if (this.scanner.done) this.bodyDone = true;
    } else {
      end = Math.min(this.bodyLeft, chunk.length);
      this.bodyLeft -= end;
      if (this.bodyLeft === 0) this.bodyDone = true;
    }
    const part = end === chunk.length ? chunk : chunk.subarray(0, end);
    if (this.sink === 'upstream' && this.upstream) {
      this.bodyForwarded = true;
      const ok = withHead ? writeWithHead(this.upstream.socket, this.upstreamHead, part) : this.upstream.socket.write(part);
      if (!ok && !this.bodyDone) {
        this.upstreamFull = true;
        this.socket.pause();
      }
    }
    return end < chunk.length ? chunk.subarray(end) : undefined;
  }

  /** After body bytes were taken: the exchange may be complete. */
  afterBody(): void {
    if (this.bodyDone && this.responseDone) this.conn.finished(this, this.keepAlive);
  }

  /** A response is out (or the upstream side is over): finish now, or once the rest of the request body is read and dropped. */
  private settle(): void {
    if (this.bodyDone) {
      this.conn.finished(this, this.keepAlive);
      return;
    }
    this.sink = 'discard';
    this.conn.pumpBody();
    if (!this.bodyDone && !this.conn.gone) this.socket.resume();
  }

  /** The request body broke its framing: a 400 while nothing was answered yet, else both connections cut. */
  private badBody(message: string): void {
    const reason = `malformed request body: ${message}`;
    this.upstream?.destroy();
    this.upstream = undefined;
    this.keepAlive = false;
    this.bodyDone = true;
    this.sink = 'discard';
    this.conn.buf = undefined;
    if (this.status === 0 && !this.responseDone) {
      this.responseDone = true;
      this.socket.end(localReplyBytes(400, 'BAD_REQUEST', reason, CLOSE_HEADERS, this.head.method === 'HEAD'));
      this.account(400, 'BAD_REQUEST', reason, this.extra());
      this.conn.finished(this, false); // the connection closes: nothing after the broken body is read
    } else {
      this.socket.destroy();
      this.account(this.status, 'BAD_REQUEST', reason, this.extra());
    }
  }

  /** The Connection lines of this exchange's response: whether the connection is kept for the next request. */
  private connectionHeaders(): string {
    return this.keepAlive ? this.conn.fp.keepAliveHeaders : CLOSE_HEADERS;
  }

  /** Sends a local reply (nothing from the upstream went out), then settles. */
  private localReply(code: LocalReplyCode, reason: string, headers?: Record<string, string>, status: number = LOCAL_REPLIES[code]): void {
    this.responseDone = true;
    this.status = status;
    if (this.conn.fp.closing) this.keepAlive = false;
    this.socket.write(
      localReplyBytes(status, code, reason, this.connectionHeaders(), this.head.method === 'HEAD', this.rs?.fault, headers),
    );
    this.settle();
  }

  // ---- the upstream side ----

  onUpstreamData(chunk: Buffer): void {
    if (this.res !== undefined) {
      this.responseBody(chunk);
      return;
    }
    let buf: Buffer = this.resBuf === undefined ? chunk : Buffer.concat([this.resBuf, chunk]);
    this.resBuf = buf;
    for (;;) {
      const r = parseResponseHead(buf, 0, this.head.method);
      if (r === undefined) return;
      if (typeof r === 'string') {
        this.upstreamFailed(Object.assign(new Error(r), { code: 'HPE_INVALID' }));
        return;
      }
      const rest: Buffer | undefined = r.size < buf.length ? buf.subarray(r.size) : undefined;
      if (r.status < 200) {
        if (r.status === 101) {
          this.upstreamFailed(Object.assign(new Error('unexpected 101'), { code: 'HPE_INVALID' }));
          return;
        }
        // Interim responses (103 Early Hints…) are not passed on, as undici's stream() does not.
        this.resBuf = rest;
        if (rest === undefined) return;
        buf = rest;
        continue;
      }
      this.resBuf = undefined;
      this.res = r;
      this.responseHead(r, rest);
      return;
    }
  }

  private responseHead(r: ResponseHead, rest: Buffer | undefined): void {
    const rs = this.rs;
    if (rs !== undefined) {
      rs.headersArrived();
      if (rs.plan.retry && this.dropForRetry(rs, r, rest)) return;
    }
    this.status = r.status;
    if (this.conn.fp.closing) this.keepAlive = false;
    const route = this.plan.route;
    let text = `HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? 'unknown'}\r\n`;
    let hasDate = false;
    // The body's framing is written below from what was parsed; the upstream's Content-Length is
    // passed on only where it describes no body here (HEAD, 204, 304).
    const ownLength = r.status !== 204 && r.status !== 304 && this.head.method !== 'HEAD';
    const added = this.decision?.responseHeaders;
    const named = connectionNamed(r.connection);
    if (route?.responseHeaders || rs?.fault || added) {
      const headers: Record<string, string | string[] | undefined> = {};
      for (const [name, value] of r.lines) {
        if (HOP_BY_HOP.has(name) || named?.has(name)) continue;
        const prev = headers[name];
        headers[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
      }
      if (rs?.fault) headers[FAULT_HEADER] = rs.fault;
      if (route?.responseHeaders) route.applyResponseHeaders(headers);
      if (added) Object.assign(headers, added);
      if (ownLength) delete headers['content-length'];
      for (const name in headers) text += headerLines(name, headers[name]);
      hasDate = headers.date !== undefined;
    } else {
      for (const [name, value] of r.lines) {
        if (HOP_BY_HOP.has(name) || (ownLength && name === 'content-length') || named?.has(name)) continue;
        if (name === 'date') hasDate = true;
        text += `${name}: ${value}\r\n`;
      }
    }
    if (!hasDate) text += `Date: ${utcDate()}\r\n`;
    text += this.connectionHeaders();
    if (r.framing === 'chunked' || r.framing === 'close') text += `Transfer-Encoding: ${r.codings ? `${r.codings}, ` : ''}chunked\r\n`;
    else if (ownLength && r.status >= 200) text += `Content-Length: ${r.framing === 'length' ? r.contentLength : 0}\r\n`;
    text += '\r\n';
    this.resLeft = r.contentLength;
    if (r.framing === 'chunked') this.resScanner = new ChunkedScanner();
    if (r.framing === 'none') {
      if (rest !== undefined) this.resDirty = true;
      this.socket.write(text, 'latin1');
      this.responseComplete();
      return;
    }
    if (rest !== undefined) {
      this.responseBody(rest, text);
      return;
    }
    if (!this.socket.write(text, 'latin1')) this.upstream?.socket.pause();
  }

  /** Body bytes of the response: passed on (a close-delimited body re-framed as chunks), its end found. */
  private responseBody(chunk: Buffer, head?: string): void {
    const r = this.res as ResponseHead;
    let part = chunk;
    let done = false;
    if (r.framing === 'length') {
      if (chunk.length >= this.resLeft) {
        if (chunk.length > this.resLeft) {
          this.resDirty = true;
          part = chunk.subarray(0, this.resLeft);
        }
        done = true;
      }
      this.resLeft -= part.length;
    } else if (r.framing === 'chunked') {
      let end: number;
      try {
        end = (this.resScanner as ChunkedScanner).feed(chunk, 0);
      } catch (e) {
        this.upstreamFailed(Object.assign(new Error((e as Error).message), { code: 'HPE_INVALID_CHUNK_SIZE' }));
        return;
      }
      if (end >= 0) {
        done = true;
        if (end < chunk.length) {
          this.resDirty = true;
          part = chunk.subarray(0, end);
        }
      }
    } else {
      // Close-delimited: one chunk per read, so the client connection stays reusable (as node:http re-frames it).
      const headBytes = head === undefined ? 0 : Buffer.byteLength(head, 'latin1');
      const out = Buffer.allocUnsafe(headBytes + chunk.length + 16);
      let n = head === undefined ? 0 : out.write(head, 'latin1');
      n += out.write(`${chunk.length.toString(16)}\r\n`, n, 'latin1');
      n += chunk.copy(out, n);
      n += CHUNK_END.copy(out, n);
      if (!this.socket.write(out.subarray(0, n))) this.upstream?.socket.pause();
      return;
    }
    const ok = head !== undefined ? writeWithHead(this.socket, head, part) : part.length > 0 ? this.socket.write(part) : true;
    if (done) {
      this.responseComplete();
      return;
    }
    if (!ok) this.upstream?.socket.pause();
  }

  private responseComplete(): void {
    this.responseDone = true;
    const upstream = this.upstream;
    this.upstream = undefined;
    if (upstream) {
      const r = this.res as ResponseHead;
      if (r.keepAlive && this.bodyDone && !this.resDirty) upstream.release(r.keepAliveMs);
      else upstream.destroy();
    }
    this.account(this.status, undefined, undefined, this.extra(), outcomeOfStatus(this.status));
    this.settle();
  }

  onUpstreamEnd(): void {
    if (this.res?.framing === 'close' && !this.responseDone) {
      this.upstream = undefined;
      this.socket.write(LAST_CHUNK);
      this.responseComplete();
      return;
    }
    this.upstreamFailed(socketClosedError());
  }

  onUpstreamError(err: Error): void {
    this.upstreamFailed(err);
  }

  onUpstreamDrain(): void {
    this.upstreamFull = false;
    if (!this.bodyDone && this.sink === 'upstream' && !this.conn.gone) this.socket.resume();
  }

  /** The client's socket can take more: read the upstream again. */
  clientDrained(): void {
    this.upstream?.socket.resume();
  }

  /** The upstream failed (connect, TLS, reset, timeout, malformed response): a local reply before any response byte, else the client connection is cut. */
  private upstreamFailed(err: Error & { code?: string }): void {
    if (this.responseDone || this.accounted) return;
    const upstream = this.upstream;
    this.upstream = undefined;
    upstream?.destroy();
    // A reused keep-alive connection the upstream closed while idle: one more try on a new one, when
    // nothing of the request is lost and the method is idempotent (the upstream may have acted on it:
    // a POST is never sent twice unless a retry policy says so).
    if (
      upstream?.reused &&
      isIdempotent(this.head.method) &&
      !this.retried &&
      this.res === undefined &&
      this.resBuf === undefined &&
      !this.bodyForwarded &&
      (err.code === 'UND_ERR_SOCKET' || err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED')
    ) {
      this.retried = true;
      this.connect();
      return;
    }
    if (this.rs !== undefined) {
      this.tryFailed(this.rs, err);
      return;
    }
    const endpoint = this.endpoint as FastEndpoint;
    const { code, reason } = classifyUpstreamError(err);
    if (this.status === 0 && this.plan.direct !== undefined) {
      const why = this.plan.direct.failed(reason);
      const local = workloadFailure(code);
      this.account(LOCAL_REPLIES[local], local, why, this.extra());
      this.localReply(local, why);
      return;
    }
    if (this.status === 0) {
      this.account(LOCAL_REPLIES[code], code, reason, this.extra(), 'local-origin-failure');
      this.localReply(code, `${reason} (endpoint ${endpoint.id} of ${(this.plan.up as UpstreamRuntime).service})`);
      return;
    }
    // The response head went out: cutting the connection is the only honest signal left.
    this.responseDone = true;
    this.socket.destroy();
    this.account(this.status, code, reason, this.extra(), 'local-origin-failure');
  }

  /** The client went away before the exchange ended: the upstream request is aborted. */
  clientGone(): void {
    const upstream = this.upstream;
    this.upstream = undefined;
    upstream?.destroy();
    if (this.accounted) return;
    this.responseDone = true;
    const waiting = this.rs?.pending !== undefined;
    this.account(0, 'DOWNSTREAM_DISCONNECT', `the client went away${waiting ? ' while waiting for a connection' : ''}`, this.extra());
  }

  // ---- resilient upstreams: the slow path's `OutboundProxy.resilient` and `tries`, in its order ----

  private get upstreamRuntime(): UpstreamRuntime {
    return this.plan.up as UpstreamRuntime;
  }

  private routeName(): string | undefined {
    const route = this.plan.route;
    return route ? `${route.rule}/${route.name}` : undefined;
  }

  /** Fault injection first (an abort never reaches the upstream), then admission by the circuit breaker. */
  private faultThenAdmit(): void {
    const rs = this.rs as Tries;
    const decision = rs.plan.fault && decideFault(rs.plan.fault);
    if (decision?.delayMs !== undefined) {
      rs.metrics.faults.labels(this.upstreamRuntime.service, 'delay').inc();
      rs.fault = 'delay';
      rs.timer = setTimeout(() => {
        rs.timer = undefined;
        if (!this.accounted) this.abortOrAdmit(rs, decision);
      }, decision.delayMs);
      return;
    }
    this.abortOrAdmit(rs, decision);
  }

  private abortOrAdmit(rs: Tries, decision: FaultDecision | undefined): void {
    const service = this.upstreamRuntime.service;
    if (decision?.abortStatus !== undefined) {
      rs.metrics.faults.labels(service, 'abort').inc();
      const reason = `fault injected by route ${this.routeName()}`;
      const status = decision.abortStatus;
      const body = JSON.stringify({ code: 'FAULT_INJECTED', message: reason });
      this.responseDone = true;
      this.status = status;
      if (this.conn.fp.closing) this.keepAlive = false;
      const lines = `${ERROR_HEADER}: FAULT_INJECTED\r\n${FAULT_HEADER}: abort\r\n${REASON_HEADER}: ${reason}\r\n`;
      this.socket.write(jsonReplyBytes(status, body, lines, this.connectionHeaders(), this.head.method === 'HEAD'));
      this.account(status, 'FAULT_INJECTED', reason, { route: this.routeName(), fault: 'abort' });
      this.settle();
      return;
    }
    const breaker = rs.breaker;
    const admission = breaker?.acquire();
    if (typeof admission === 'string') {
      rs.metrics.overflows.labels(service, admission).inc();
      const reason = `circuit breaker of ${service}: ${admission} (${breaker?.limits[admission]}) reached`;
      this.resilientReply('UPSTREAM_OVERFLOW', reason);
      return;
    }
    if (admission === undefined) {
      rs.holdsSlot = breaker !== undefined;
      this.firstTry(rs);
      return;
    }
    // Only maxConnections is reached: wait as pending, at most until the request timeout (Envoy's route timeout covers it).
    rs.metrics.overflows.labels(service, 'maxConnections').inc();
    rs.pending = admission;
    if (rs.deadline !== Number.POSITIVE_INFINITY)
      rs.timer = setTimeout(
        () => {
          rs.timer = undefined;
          if (this.accounted || rs.pending !== admission) return;
          const reason = `no connection to ${service} within the request timeout (${rs.plan.requestTimeout} ms): waited as pending, maxConnections (${breaker?.limits.maxConnections}) in use`;
          this.resilientReply('UPSTREAM_TIMEOUT', reason); // leaves the queue (rsDone)
        },
        Math.max(0, rs.deadline - performance.now()),
      );
    void admission.admitted.then(() => {
      if (this.accounted || rs.pending !== admission) return; // gave up meanwhile: rsDone handed the slot on
      rs.pending = undefined;
      clearTimeout(rs.timer);
      rs.timer = undefined;
      rs.holdsSlot = true;
      this.firstTry(rs);
    });
  }

  private firstTry(rs: Tries): void {
    rs.plan.budget?.onRequest();
    this.sendTry(rs);
  }

  /** One try on `this.endpoint`, with the time left of the request timeout and the per-try timeout. */
  private sendTry(rs: Tries): void {
    rs.attempts++;
    this.tryNo++;
    const endpoint = this.endpoint as FastEndpoint;
    this.activeOn = endpoint;
    endpoint.active++;
    this.res = undefined;
    this.resBuf = undefined;
    this.resDirty = false;
    this.retried = false;
    const left = rs.deadline - performance.now();
    if (left !== Number.POSITIVE_INFINITY) {
      const ms = Math.max(1, left);
      rs.timer = setTimeout(() => {
        // The request timeout ran out (a timer may fire a fraction of a millisecond before the clock says so).
        rs.expired = true;
        this.tryExpired(ms);
      }, ms);
    }
    const perTry = rs.plan.retry?.perTryTimeout;
    if (perTry !== undefined) rs.tryTimer = setTimeout(() => this.tryExpired(perTry), perTry);
    this.connect();
  }

  private tryExpired(ms: number): void {
    const rs = this.rs as Tries;
    rs.clearTimers();
    this.upstreamFailed(timeoutError(ms));
  }

  /** A try is over: its endpoint's in-flight count, outlier detection, the retry slot it held. */
  private tryEnded(rs: Tries, outcome: OutlierOutcome): void {
    rs.clearTimers();
    this.leaveEndpoint(outcome);
    if (rs.holdsRetry) {
      rs.holdsRetry = false;
      rs.breaker?.retryDone();
    }
  }

  /**
   * A response head the retry policy wants another try for (and the method, Retry-After, time
   * left, maxRetries and the budget allow): dropped before anything reached the client. Its
   * connection goes back to the pool when the whole response is here, else it is closed.
   */
  private dropForRetry(rs: Tries, r: ResponseHead, rest: Buffer | undefined): boolean {
    let retryAfter: string | undefined;
    let grpcStatus: string | undefined;
    for (const [name, value] of r.lines) {
      if (name === 'retry-after') retryAfter ??= value;
      else if (name === 'grpc-status') grpcStatus ??= value;
    }
    if (!(rs.plan.retry?.retriableStatus(r.status, grpcStatus) && this.mayRetry(rs, undefined, retryAfter, grpcStatus))) return false;
    const upstream = this.upstream;
    this.upstream = undefined;
    this.res = undefined;
    if (upstream) {
      const whole =
        r.framing === 'none' ? rest === undefined : r.framing === 'length' && (rest === undefined ? 0 : rest.length) === r.contentLength;
      if (whole && r.keepAlive && this.bodyDone) upstream.release(r.keepAliveMs);
      else upstream.destroy();
    }
    this.tryEnded(rs, outcomeOfStatus(r.status));
    this.retryLater(rs);
    return true;
  }

  /** Whether one more try may go (see admitRetry); when it may, the wait the response asked for is kept. */
  private mayRetry(rs: Tries, failure: AttemptFailure | undefined, retryAfter?: string, grpcStatus?: string): boolean {
    const service = this.upstreamRuntime.service;
    const admitted = admitRetry(
      rs,
      rs.plan,
      { attempts: rs.attempts, method: this.head.method, deadline: rs.deadline, expired: rs.expired },
      failure,
      { retryAfter, grpcStatus },
      (limit) => rs.metrics.overflows.labels(service, limit).inc(),
    );
    if (!admitted) return false;
    rs.retryAfter = admitted.retryAfter;
    return true;
  }

  /** The retry is decided (its slot taken): after the backoff or Retry-After, on another endpoint. */
  private retryLater(rs: Tries): void {
    rs.holdsRetry = true;
    const backoff = rs.retryAfter ?? (rs.plan.retry as NonNullable<RequestPlan['retry']>).backoff(rs.attempts);
    const wait = Math.min(backoff, Math.max(0, rs.deadline - performance.now()));
    if (wait > 0)
      rs.timer = setTimeout(() => {
        rs.timer = undefined;
        this.retryNow(rs);
      }, wait);
    else this.retryNow(rs);
  }

  private retryNow(rs: Tries): void {
    if (this.accounted) return;
    const endpoint = this.endpoint as FastEndpoint;
    if (rs.expired || performance.now() >= rs.deadline) {
      const reason = `no complete response within the request timeout (${rs.plan.requestTimeout} ms)`;
      this.resilientReply('UPSTREAM_TIMEOUT', `${reason} (endpoint ${endpoint.id} of ${this.upstreamRuntime.service})`);
      return;
    }
    rs.exclude ??= new Set();
    rs.exclude.add(endpoint.id);
    this.endpoint = this.upstreamRuntime.pool.pick(this.plan.view as RequestView, rs.subset, rs.exclude) ?? endpoint;
    rs.metrics.retries.labels(this.upstreamRuntime.service).inc();
    this.sendTry(rs);
  }

  /** A try failed before a complete response: another try when the policy allows, else the local reply (or the cut connection). */
  private tryFailed(rs: Tries, err: Error): void {
    const { code } = classifyUpstreamError(err);
    let { reason } = classifyUpstreamError(err);
    if (code === 'UPSTREAM_TIMEOUT' && (rs.expired || performance.now() >= rs.deadline - 1))
      reason = `no complete response within the request timeout (${rs.plan.requestTimeout} ms)`;
    this.tryEnded(rs, 'local-origin-failure');
    if (this.status !== 0) {
      // The response head went out: cutting the connection is the only honest signal left.
      this.responseDone = true;
      this.socket.destroy();
      this.account(this.status, code, reason, this.extra());
      return;
    }
    const failure = failureOfError(code);
    if (rs.plan.retry?.retriableFailure(failure) && this.mayRetry(rs, failure)) {
      this.retryLater(rs);
      return;
    }
    this.resilientReply(code, `${reason} (endpoint ${(this.endpoint as FastEndpoint).id} of ${this.upstreamRuntime.service})`);
  }

  /** The sidecar's own answer on the resilient path (marked with an injected delay when there was one). */
  private resilientReply(code: LocalReplyCode, reason: string): void {
    this.account(LOCAL_REPLIES[code], code, reason, this.extra());
    this.localReply(code, reason);
  }

  /** The request is accounted: timers stop, a pending place is given up, the breaker's slots are released. */
  private rsDone(rs: Tries): void {
    rs.clearTimers();
    const breaker = rs.breaker;
    if (rs.pending !== undefined) {
      const pending = rs.pending;
      rs.pending = undefined;
      if (!pending.cancel()) breaker?.release(); // a slot was handed to it meanwhile: handed on
    }
    if (rs.holdsRetry) {
      rs.holdsRetry = false;
      breaker?.retryDone();
    }
    if (rs.holdsSlot) {
      rs.holdsSlot = false;
      breaker?.release();
    }
  }
}

/**
 * The resilience state of one request to a resilient upstream (made only for those): its plan
 * (request timeout, retry policy and budget, fault), the breaker slot it holds or waits for, the
 * tries made, and the timer running (fault delay, pending wait, try deadline, backoff).
 */
class Tries {
  attempts = 0;
  readonly deadline: number;
  /** The request timeout ran out (its timer fired): no more tries. */
  expired = false;
  fault: 'delay' | undefined;
  /** Holds an admitted slot of the breaker (released once, when the request is accounted). */
  holdsSlot = false;
  /** Holds a retry slot of the breaker (released when the retry's try ends). */
  holdsRetry = false;
  pending: PendingAdmission | undefined;
  timer: NodeJS.Timeout | undefined;
  /** The per-try timeout, until the response head. */
  tryTimer: NodeJS.Timeout | undefined;
  retryAfter: number | undefined;
  /** Endpoints tried (made on the first retry). */
  exclude: Set<string> | undefined;

  constructor(
    readonly plan: RequestPlan,
    started: number,
    readonly subset: string | undefined,
    readonly breaker: CircuitBreaker | undefined,
    readonly metrics: SidecarMetrics,
  ) {
    this.deadline = plan.requestTimeout === undefined ? Number.POSITIVE_INFINITY : started + plan.requestTimeout;
  }

  headersArrived(): void {
    if (this.tryTimer !== undefined) {
      clearTimeout(this.tryTimer);
      this.tryTimer = undefined;
    }
  }

  clearTimers(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.headersArrived();
  }
}
