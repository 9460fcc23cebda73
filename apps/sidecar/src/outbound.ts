import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createH2Server } from 'node:http2';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AttemptFailure,
  type CircuitBreaker,
  decideFault,
  type MatchedRoute,
  outcomeOfStatus,
  type RequestView,
} from '@novamesh/dataplane';
import type { Dispatcher } from 'undici';
import type { AccessLog, AccessRecord } from './access-log';
import { FastPath, type FastPathHost } from './fast-path';
import {
  absoluteForm,
  clientGone,
  type DownstreamRequest,
  type DownstreamResponse,
  type ForwardOutcome,
  type ForwardRequest,
  failureOfError,
  forward,
  forwardableHeaders,
  forwardWithTrailers,
  hasBody,
  onClientConnectionClosed,
  RetryableBody,
  requestCodingProblem,
  requestHostProblem,
  splitUrl,
} from './forward';
import type { InFlightLimit } from './in-flight';
import { requestView } from './inbound';
import {
  ERROR_HEADER,
  FAULT_HEADER,
  grpcStatusOfHttp,
  isGrpc,
  LOCAL_REPLIES,
  type LocalReplyCode,
  REASON_HEADER,
  sendGrpcStatus,
  sendLocalReply,
} from './local-reply';
import type { SidecarMetrics } from './metrics';
import { createHttp1Server, ProtocolListener } from './protocol-listener';
import { acceptUpgrades, CONNECT_REFUSED, refuseConnects, refuseUpgrade, relayUpgrade, upgradeProblem } from './upgrade';
import { admitRetry, DEFAULT_BUSY_TIMEOUT_MS, type RuntimeEndpoint, type UpstreamRuntime } from './upstream-runtime';

export { FAULT_HEADER } from './local-reply';

type Log = (status: number, error?: string, reason?: string, extra?: Partial<AccessRecord>) => void;

/**
 * What an attempt tells outlier detection: the upstream's status when it answered (also when that
 * answer could not go to this client), a local-origin failure when it did not answer.
 */
function recordOf(outcome: ForwardOutcome): ReturnType<typeof outcomeOfStatus> | 'local-origin-failure' {
  if (outcome.answered !== undefined) return outcomeOfStatus(outcome.answered);
  return outcome.error ? 'local-origin-failure' : outcomeOfStatus(outcome.status);
}

/** The retry condition a failed attempt stands for. */
function failureOf(outcome: ForwardOutcome): AttemptFailure {
  return outcome.refused ? 'refused-stream' : failureOfError(outcome.error);
}

/** The domain apps address mesh services under: `http://orders.mesh/`. */
export const MESH_DOMAIN = '.mesh';

/**
 * The service a request is for: the host of an absolute-form request (the sidecar used as an HTTP
 * proxy) or of the Host header, without port and without the `.mesh` suffix.
 */
export function serviceOfRequest(req: Pick<DownstreamRequest, 'url' | 'headers'>): RequestTarget {
  let host: string | undefined;
  let path = req.url ?? '/';
  let authority: string | undefined;
  if (!path.startsWith('/')) {
    const abs = absoluteForm(path);
    if (!abs) return { path };
    ({ authority, path } = abs);
    host = authority;
  } else host = req.headers.host ?? (req.headers[':authority'] as string | undefined);
  if (!host) return { path };
  if (authority !== undefined) return { service: serviceName(host), path, authority };
  return { service: serviceName(host), path };
}

/** What {@link serviceOfRequest} found: the service, the origin-form path, and for an absolute-form target its authority (the upstream's Host). */
export interface RequestTarget {
  service?: string;
  path: string;
  authority?: string;
}

/** A host (Host header or URL authority) as a mesh service name: lower case, without port and `.mesh`. */
function serviceName(host: string): string {
  let name = host.toLowerCase();
  const colon = name.lastIndexOf(':');
  if (colon > 0 && !name.endsWith(']')) name = name.slice(0, colon);
  if (name.endsWith(MESH_DOMAIN)) name = name.slice(0, -MESH_DOMAIN.length);
  return name;
}

/**
 * The listener the workload sends its outbound calls to: `http://<service>.mesh/...` with this
 * port as HTTP proxy, or the Host header naming the service; plus one listener per configured
 * upstream port, bound to that service. Per request: route match (first RouteRule route that fits),
 * split to a subset, pick an endpoint (healthy, not ejected, locality first) with the upstream's
 * balancer, apply header changes and rewrites, mirror a share, stream the request and response.
 */
export class OutboundProxy {
  private readonly listeners: ProtocolListener[] = [];

  constructor(
    private readonly deps: {
      upstreams: () => ReadonlyMap<string, UpstreamRuntime> | undefined;
      metrics: SidecarMetrics;
      accessLog: AccessLog;
      inFlight: InFlightLimit;
      /** SIDECAR_FAST_PATH: plain HTTP/1.1 requests skip node:http and undici (see fast-path.ts). */
      fastPath?: boolean;
      /** SIDECAR_HEADERS_TIMEOUT: a request head incomplete after this long gets 408 (both paths). */
      headersTimeoutMs: number;
      /** SIDECAR_LISTENER_FILTERS_TIMEOUT: a connection whose protocol is undecided after this long is closed. */
      listenerFiltersTimeoutMs?: number;
      /** SIDECAR_IDLE_TIMEOUT: an HTTP/1.1 keep-alive connection idle, or an HTTP/2 session without an open stream, this long is closed. */
      idleTimeoutMs: number;
      /** SIDECAR_TUNNEL_IDLE_TIMEOUT: a WebSocket tunnel without a byte either way this long is closed. */
      tunnelIdleTimeoutMs: number;
    },
  ) {}

  /** What the fast path shares with this proxy: routing input, the in-flight bound, metrics and log. */
  private readonly fastHost: FastPathHost = {
    log: (r) => this.logRequest(r.started, r.method, r.path, r.upstream, r.requestId, r.status, r.error, r.reason, r.extra),
    admit: () => this.deps.inFlight.tryAcquire('outbound'),
    release: () => this.deps.inFlight.release(),
    maxInFlight: () => this.deps.inFlight.max,
    metrics: () => this.deps.metrics,
    counted: (handoff) => {
      if (handoff === undefined) this.deps.metrics.fastPathRequests.inc();
      else this.deps.metrics.fastPathHandoffs.labels(handoff).inc();
    },
  };

  /** Listens on `port` (HTTP/1.1 and, for gRPC clients, HTTP/2 without TLS) for any mesh service, or (with `service`) for that one only. Returns the bound port. */
  async listen(port: number, host: string, service?: string): Promise<number> {
    const handler = this.deps.inFlight.guard('outbound', (req, res) => this.handle(req, res, service));
    const http1 = createHttp1Server(this.deps.headersTimeoutMs, this.deps.idleTimeoutMs, handler);
    acceptUpgrades(
      http1,
      this.deps.inFlight.guardUpgrade('outbound', (req, socket, head) => void this.upgrade(req, socket, head, service)),
    );

    const h2c = createH2Server({}, handler);
    refuseConnects(http1, h2c, (req, status) =>
      this.logRequest(performance.now(), req.method, req.url ?? '', '', '', status, 'BAD_REQUEST', CONNECT_REFUSED, undefined),
    );
    const listener = new ProtocolListener({
      http1,
      h2c,
      http1Front: this.deps.fastPath
        ? new FastPath(this.fastHost, http1, {
            kind: 'outbound',
            upstreams: () => this.deps.upstreams(),
            serviceOf: (req) => serviceOfRequest(req as DownstreamRequest),
            fixed: service,
          })
        : undefined,
      filtersTimeoutMs: this.deps.listenerFiltersTimeoutMs,
      onFiltersTimeout: () => this.deps.metrics.listenerFiltersTimeouts.labels('outbound').inc(),
      idleTimeoutMs: this.deps.idleTimeoutMs,
    });
    this.listeners.push(listener);
    return listener.listen(port, host);
  }

  /** The {@link Log} of one request on the node:http path. */
  private logOf(started: number, req: DownstreamRequest, r: Routing): Log {
    return (status, error, reason, extra) =>
      this.logRequest(started, req.method, r.path, r.upstreamName, r.requestId, status, error, reason, extra);
  }

  /** Metrics and access log of one outbound request (both paths). */
  private logRequest(
    started: number,
    method: string | undefined,
    path: string,
    upstream: string,
    requestId: string,
    status: number,
    error: string | undefined,
    reason: string | undefined,
    extra: Partial<AccessRecord> | undefined,
  ): void {
    const ms = performance.now() - started;
    this.deps.metrics.outbound(upstream, status, error, ms);
    this.deps.accessLog.write({ direction: 'outbound', method, path, status, ms, upstream, error, reason, requestId, ...extra });
  }

  async close(graceMs: number): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.close(graceMs)));
  }

  /**
   * What every outbound request is decided by, before anything is sent: the service it names, its
   * upstream, the route, the subset and the endpoint, and the headers and path for the upstream;
   * or the local reply it gets instead.
   */
  private routeOf(req: DownstreamRequest, fixed: string | undefined): Routing {
    const hostIssue = requestHostProblem(req);
    const target = fixed ? { ...serviceOfRequest(req), service: fixed } : serviceOfRequest(req);
    const { path, query } = splitUrl(target.path);
    const requestId = (req.headers['x-request-id'] as string | undefined) ?? randomUUID();
    const at = { path, requestId, upstreamName: hostIssue ? '' : (target.service ?? '') };
    if (hostIssue) return { ...at, refusal: { code: 'BAD_REQUEST', reason: hostIssue } };
    const upstreams = this.deps.upstreams();
    if (!upstreams)
      return { ...at, refusal: { code: 'NO_SNAPSHOT', reason: 'this sidecar has not received its configuration yet', logReason: false } };
    if (!target.service) {
      const reason = 'no service named: call http://<service>.mesh/ (Host header or absolute URL)';
      return { ...at, refusal: { code: 'BAD_REQUEST', reason } };
    }
    const up = upstreams.get(target.service);
    if (!up) {
      const reason = `"${target.service}" is not a service this sidecar may call (known: ${[...upstreams.keys()].join(', ') || 'none'})`;
      return { ...at, refusal: { code: 'NO_ROUTE', reason } };
    }
    const view = requestView(req, path, query);
    const route = up.routes.match(view);
    const subset = route?.pickSubset();
    const endpoint = up.pool.pick(view, subset);
    const routeName = route ? `${route.rule}/${route.name}` : undefined;
    if (!endpoint) {
      const reason = `no healthy endpoint of ${up.service}${subset ? ` in subset ${subset}` : ''}${up.outlier?.ejectedEndpoints ? ` (${up.outlier.ejectedEndpoints} ejected)` : ''}`;
      return { ...at, refusal: { code: 'NO_HEALTHY_UPSTREAM', reason, routeName } };
    }
    const headers = forwardableHeaders(req.headers);
    if (target.authority !== undefined) headers.host = target.authority; // RFC 9112 §3.2.2: the URL's authority is the host
    headers['x-request-id'] = requestId;
    if (route?.requestHeaders) route.applyRequestHeaders(headers);
    const upstreamPath = route ? `${route.rewritePath(path)}${query ? `?${query}` : ''}` : target.path;
    return { ...at, up, view, route, subset, endpoint, routeName, headers, upstreamPath };
  }

  private async handle(req: DownstreamRequest, res: DownstreamResponse, fixed: string | undefined): Promise<void> {
    const started = performance.now();
    const r = this.routeOf(req, fixed);
    const log = this.logOf(started, req, r);
    if ('refusal' in r) {
      sendLocalReply(req, res, r.refusal.code, r.refusal.reason);
      return logRefusal(log, r.refusal, LOCAL_REPLIES[r.refusal.code]);
    }
    const coding = requestCodingProblem(req);
    if (coding) {
      sendLocalReply(req, res, 'UNSUPPORTED_TRANSFER_CODING', coding, undefined, 501);
      return log(501, 'UNSUPPORTED_TRANSFER_CODING', coding, { endpoint: r.endpoint.id, route: r.routeName });
    }
    const { up, view, route, subset, endpoint, routeName, headers, upstreamPath } = r;
    let body: ForwardRequest['body'] = hasBody(req) ? req : null;
    /** A mirrored request's body, kept (up to MAX_RETRY_BODY_BYTES) for the copy; retries send it again from here too. */
    let kept: RetryableBody | undefined;
    let copy: BodyMirror | undefined;
    const mirror = route?.mirror && route.shouldMirror() ? route.mirror.subset : undefined;
    if (mirror !== undefined) {
      if (body !== null) {
        kept = new RetryableBody(req);
        body = kept.open() ?? null;
      }
      // A resilient upstream may answer itself first (fault abort, overflow): its copy waits for the first try.
      copy = new BodyMirror(req, kept, !up.resilient, (whole) => this.mirror(up, view, mirror, upstreamPath, headers, whole));
    }

    const forwarded: ForwardRequest = {
      method: view.method,
      path: upstreamPath,
      headers,
      body,
      ...(route?.responseHeaders
        ? { onResponseHeaders: (h: Record<string, string | string[] | undefined>) => route.applyResponseHeaders(h) }
        : {}),
    };
    if (up.resilient)
      return this.resilient({ req, res, up, view, route, subset, endpoint, forwarded, log, routeName, started, kept, copy });
    const outcome = await this.attempt(req, res, endpoint, forwarded);
    kept?.close(forwarded.body); // a try that failed early no longer holds the body back
    const extra = { endpoint: endpoint.id, route: routeName };
    if (outcome.error === 'DOWNSTREAM_DISCONNECT') return log(0, outcome.error, outcome.reason, extra);
    up.record(endpoint.id, recordOf(outcome));
    if (outcome.error && outcome.status === 0) {
      sendLocalReply(req, res, outcome.error, `${outcome.reason} (endpoint ${endpoint.id} of ${up.service})`);
      return log(res.statusCode, outcome.error, outcome.reason, extra);
    }
    log(outcome.status, outcome.error, outcome.reason, extra);
  }

  /**
   * An HTTP/1.1 upgrade request (WebSocket): routed like any request (route match, subset, endpoint,
   * header changes, rewrite), then sent over a connection of its own to the endpoint (mTLS as
   * usual), which becomes a tunnel when the upstream answers 101. Retries, faults, mirroring and the
   * circuit breaker do not apply; the route's or upstream's request timeout (else undici's 300 s)
   * bounds the wait for the answer.
   */
  private async upgrade(req: IncomingMessage, client: Socket, head: Buffer, fixed: string | undefined): Promise<void> {
    const started = performance.now();
    const r = this.routeOf(req, fixed);
    const log = this.logOf(started, req, r);
    if ('refusal' in r) return logRefusal(log, r.refusal, refuseUpgrade(client, r.refusal.code, r.refusal.reason));
    const { up, route, endpoint, routeName, headers, upstreamPath } = r;
    const extra = { endpoint: endpoint.id, route: routeName, upgrade: req.headers.upgrade };
    const problem = upgradeProblem(req);
    if (problem) return log(refuseUpgrade(client, 'BAD_REQUEST', problem), 'BAD_REQUEST', problem, extra);
    const open = endpoint.open;
    if (!open) {
      const reason = `${up.service} is a gRPC service: WebSocket upgrades are not proxied to it`;
      return log(refuseUpgrade(client, 'BAD_REQUEST', reason), 'BAD_REQUEST', reason, extra);
    }
    endpoint.active++;
    const outcome = await relayUpgrade(
      client,
      head,
      {
        method: req.method ?? 'GET',
        path: upstreamPath,
        headers,
        protocol: req.headers.upgrade ?? '',
        connect: open,
        timeoutMs: up.planFor(route).requestTimeout ?? DEFAULT_BUSY_TIMEOUT_MS,
        idleTimeoutMs: this.deps.tunnelIdleTimeoutMs,
      },
      () => endpoint.active--,
    );
    if (!outcome.tunnel) endpoint.active--;
    if (outcome.error === 'DOWNSTREAM_DISCONNECT') return log(outcome.status, outcome.error, outcome.reason, extra);
    up.record(endpoint.id, outcome.error && outcome.status === 0 ? 'local-origin-failure' : outcomeOfStatus(outcome.status));
    if (outcome.error && outcome.status === 0) {
      const reason = `${outcome.reason} (endpoint ${endpoint.id} of ${up.service})`;
      return log(refuseUpgrade(client, outcome.error, reason), outcome.error, outcome.reason, extra);
    }
    log(outcome.status, outcome.error, outcome.reason, extra);
  }

  /** One try of a request on one endpoint, counting it in the endpoint's in-flight requests. */
  private async attempt(req: DownstreamRequest, res: DownstreamResponse, endpoint: RuntimeEndpoint, forwarded: ForwardRequest) {
    endpoint.active++;
    const outcome = endpoint.h2
      ? await endpoint.h2.forward(forwarded, res)
      : req.httpVersionMajor === 2
        ? await forwardWithTrailers(endpoint.dispatcher as Dispatcher, forwarded, res)
        : await forward(endpoint.dispatcher as Dispatcher, forwarded, res as ServerResponse);
    endpoint.active--;
    return outcome;
  }

  /**
   * The request path of an upstream with timeouts, retries, faults or a circuit breaker: fault
   * injection first (an abort never reaches the upstream and is never retried), then admission by
   * the circuit breaker (waiting as pending at most until the request timeout), then tries on
   * distinct endpoints while the retry policy, the budget and maxRetries allow and the request
   * timeout has time left.
   */
  private async resilient(c: {
    req: DownstreamRequest;
    res: DownstreamResponse;
    up: UpstreamRuntime;
    view: RequestView;
    route: MatchedRoute | undefined;
    subset: string | undefined;
    endpoint: RuntimeEndpoint;
    forwarded: ForwardRequest;
    log: Log;
    routeName: string | undefined;
    started: number;
    /** The body as kept for a mirror copy, already open as `forwarded.body`: tries send it again from here. */
    kept: RetryableBody | undefined;
    /** The mirror copy of the request's body: sent once a try goes upstream, never when the sidecar answers itself. */
    copy: BodyMirror | undefined;
  }): Promise<void> {
    let tried = false;
    try {
      await this.resilientSteps(c, () => {
        tried = true;
        c.copy?.go();
      });
    } finally {
      if (!tried) c.copy?.drop(c.forwarded.body);
    }
  }

  private async resilientSteps(c: Parameters<OutboundProxy['resilient']>[0], trying: () => void): Promise<void> {
    const { res, up, log, routeName } = c;
    const plan = up.planFor(c.route);
    const metrics = this.deps.metrics;
    const deadline = plan.requestTimeout === undefined ? Number.POSITIVE_INFINITY : c.started + plan.requestTimeout;
    let fault: 'delay' | undefined;
    const decision = plan.fault && decideFault(plan.fault);
    if (decision?.delayMs !== undefined) {
      metrics.faults.labels(up.service, 'delay').inc();
      fault = 'delay';
      await sleep(decision.delayMs);
      // A client that left during the delay: nothing goes upstream (as on the fast path, and Envoy's fault filter).
      if (clientGone(res))
        return log(0, 'DOWNSTREAM_DISCONNECT', 'the client went away during an injected delay', { route: routeName, fault });
    }
    if (decision?.abortStatus !== undefined) {
      metrics.faults.labels(up.service, 'abort').inc();
      const reason = `fault injected by route ${routeName}`;
      const headers = { [ERROR_HEADER]: 'FAULT_INJECTED', [FAULT_HEADER]: 'abort', [REASON_HEADER]: reason };
      if (isGrpc(c.req)) {
        // Envoy's abort.grpc_status: a gRPC caller sees a gRPC status, not an HTTP error its library calls a protocol failure.
        const grpcStatus = decision.abortGrpcStatus ?? grpcStatusOfHttp(decision.abortStatus);
        sendGrpcStatus(c.req, res, grpcStatus, reason, headers);
        return log(200, 'FAULT_INJECTED', reason, { route: routeName, fault: 'abort', grpcStatus });
      }
      const body = JSON.stringify({ code: 'FAULT_INJECTED', message: reason });
      res.writeHead(decision.abortStatus, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
      res.end(body);
      return log(decision.abortStatus, 'FAULT_INJECTED', reason, { route: routeName, fault: 'abort' });
    }
    const forwarded = c.forwarded;
    if (fault) {
      const inner = forwarded.onResponseHeaders;
      forwarded.onResponseHeaders = (h) => {
        h[FAULT_HEADER] = 'delay';
        inner?.(h);
      };
    }

    const breaker = up.breaker;
    const admission = breaker?.acquire();
    if (typeof admission === 'string') {
      metrics.overflows.labels(up.service, admission).inc();
      const limit = breaker?.limits[admission];
      const reason = `circuit breaker of ${up.service}: ${admission} (${limit}) reached`;
      return this.reply(c, 'UPSTREAM_OVERFLOW', reason, { route: routeName, fault });
    }
    if (admission && breaker) {
      metrics.overflows.labels(up.service, 'maxConnections').inc();
      // Envoy's route timeout covers the time a request waits for a connection.
      const waited = await waitForSlot(admission, breaker, deadline, res);
      const extra = { route: routeName, fault };
      if (waited === 'gone') return log(0, 'DOWNSTREAM_DISCONNECT', 'the client went away while waiting for a connection', extra);
      if (waited === 'timeout') {
        const reason = `no connection to ${up.service} within the request timeout (${plan.requestTimeout} ms): waited as pending, maxConnections (${breaker.limits.maxConnections}) in use`;
        return this.reply(c, 'UPSTREAM_TIMEOUT', reason, extra);
      }
    }
    try {
      trying();
      await this.tries(c, plan, fault, deadline);
    } finally {
      breaker?.release();
    }
  }

  private async tries(
    c: Parameters<OutboundProxy['resilient']>[0],
    plan: ReturnType<UpstreamRuntime['planFor']>,
    fault: 'delay' | undefined,
    deadline: number,
  ): Promise<void> {
    const { req, res, up, log, routeName, forwarded } = c;
    const { retry, budget } = plan;
    // Retries need the body again: each try streams it while its first 64 KiB are kept; a larger one is not retried.
    const body = c.kept ?? (retry && forwarded.body !== null ? new RetryableBody(req) : undefined);
    if (body && body !== c.kept) forwarded.body = body.open() ?? null;
    budget?.onRequest();
    const breaker = up.breaker;
    const exclude = retry ? new Set<string>() : undefined;
    let endpoint = c.endpoint;
    let attempts = 0;
    let retryAfter: number | undefined;
    let holdsRetry = false;
    /** The last try ran out of the request timeout's time (its timer may fire a little before the clock says so). */
    let expired = false;
    /** The body of the decided next try, opened at once: the body may outgrow what is kept while the retry waits. */
    let nextBody: ForwardRequest['body'] | undefined;
    /** Whether one more try may go: attempts left, the body, the method, time left, maxRetries, the budget. */
    const mayRetry = (failure: AttemptFailure | undefined, headers?: Record<string, unknown>): boolean => {
      if (body && !body.replayable) return false;
      const response = headers && { retryAfter: headers['retry-after'], grpcStatus: headers['grpc-status'] };
      const admitted = admitRetry(up, plan, { attempts, method: forwarded.method, deadline, expired }, failure, response, (limit) =>
        this.deps.metrics.overflows.labels(up.service, limit).inc(),
      );
      if (!admitted) return false;
      retryAfter = admitted.retryAfter;
      if (body) nextBody = body.open();
      return true;
    };
    if (retry)
      forwarded.retryIf = (status, headers) => retry.retriableStatus(status, headers['grpc-status']) && mayRetry(undefined, headers);
    if (retry?.perTryTimeout !== undefined) forwarded.headersTimeout = retry.perTryTimeout;
    let outcome: ForwardOutcome;
    for (;;) {
      attempts++;
      const left = deadline - performance.now();
      forwarded.timeoutMs = left === Number.POSITIVE_INFINITY ? undefined : Math.max(1, left);
      outcome = await this.attempt(req, res, endpoint, forwarded);
      body?.close(forwarded.body);
      if (holdsRetry) breaker?.retryDone();
      holdsRetry = false;
      if (outcome.error === 'DOWNSTREAM_DISCONNECT') break;
      expired = outcome.expired === true;
      if (outcome.error === 'UPSTREAM_TIMEOUT' && (expired || performance.now() >= deadline - 1))
        outcome.reason = `no complete response within the request timeout (${plan.requestTimeout} ms)`;
      up.record(endpoint.id, recordOf(outcome));
      const again =
        outcome.retry ||
        (outcome.error !== undefined &&
          outcome.status === 0 &&
          outcome.answered === undefined &&
          retry?.retriableFailure(failureOf(outcome)) &&
          mayRetry(failureOf(outcome)));
      if (!again) break;
      holdsRetry = true;
      const wait = Math.min(retryAfter ?? retry?.backoff(attempts) ?? 0, Math.max(0, deadline - performance.now()));
      if (wait > 0) await sleep(wait);
      if (res.destroyed || performance.now() >= deadline) {
        body?.close(nextBody);
        breaker?.retryDone();
        outcome = res.destroyed
          ? { status: 0, error: 'DOWNSTREAM_DISCONNECT', reason: 'the client went away', bytes: 0 }
          : {
              status: 0,
              error: 'UPSTREAM_TIMEOUT',
              reason: `no complete response within the request timeout (${plan.requestTimeout} ms)`,
              bytes: 0,
            };
        break;
      }
      if (body) forwarded.body = nextBody ?? null;
      exclude?.add(endpoint.id);
      endpoint = up.pool.pick(c.view, c.subset, exclude) ?? endpoint;
      this.deps.metrics.retries.labels(up.service).inc();
    }
    const extra = { endpoint: endpoint.id, route: routeName, ...(attempts > 1 ? { attempts } : {}), ...(fault ? { fault } : {}) };
    if (outcome.error === 'DOWNSTREAM_DISCONNECT') return log(0, outcome.error, outcome.reason, extra);
    if (outcome.error && outcome.status === 0)
      return this.reply(c, outcome.error, `${outcome.reason} (endpoint ${endpoint.id} of ${up.service})`, extra);
    log(outcome.status, outcome.error, outcome.reason, extra);
  }

  /** The sidecar's own answer on the resilient path, marked with an injected delay when there was one. */
  private reply(
    c: { req: DownstreamRequest; res: DownstreamResponse; log: Log },
    code: LocalReplyCode,
    reason: string,
    extra: Partial<AccessRecord>,
  ): void {
    sendLocalReply(c.req, c.res, code, reason, extra.fault ? { [FAULT_HEADER]: extra.fault } : undefined);
    c.log(c.res.statusCode, code, reason, extra);
  }

  /** Fire and forget: a copy of a request (and its `body`) to the mirror subset; its response and failures are dropped. */
  private mirror(
    up: UpstreamRuntime,
    view: RequestView,
    subset: string,
    path: string,
    headers: Record<string, string | string[]>,
    body?: Buffer,
  ): void {
    const endpoint = up.pool.pick(view, subset);
    if (!endpoint?.dispatcher) return;
    const host = headers.host;
    endpoint.dispatcher
      .request({
        method: view.method as 'GET',
        path,
        // Envoy marks shadowed requests by suffixing the authority with "-shadow".
        headers: { ...headers, ...(typeof host === 'string' ? { host: `${host}-shadow` } : {}), 'x-novamesh-mirror': '1' },
        ...(body ? { body } : {}),
      })
      .then((r) => r.body.dump())
      .catch(() => undefined);
  }
}

/**
 * The mirror copy of a request, with its body when it has one (kept up to MAX_RETRY_BODY_BYTES):
 * sent once the body is here whole, not cut short, and the request goes upstream (`go`); never
 * after `drop` (the sidecar answered itself), which also stops holding the body back for a stream
 * nobody reads.
 */
class BodyMirror {
  /** The copy's body once it is here whole (`null`: a request without one); undefined until then, and once sent. */
  private whole: Buffer | null | undefined;
  private dropped = false;

  constructor(
    req: DownstreamRequest,
    /** The kept body; undefined for a request without one. */
    private readonly body: RetryableBody | undefined,
    private going: boolean,
    private readonly send: (whole: Buffer | undefined) => void,
  ) {
    if (body === undefined) {
      this.whole = null;
      this.flush();
      return;
    }
    req.once('end', () => {
      const whole = body.replayable ? body.open() : undefined;
      if (!Buffer.isBuffer(whole)) return;
      this.whole = whole;
      this.flush();
    });
  }

  go(): void {
    this.going = true;
    this.flush();
  }

  drop(open: ForwardRequest['body']): void {
    this.dropped = true;
    this.whole = undefined;
    this.body?.close(open);
  }

  private flush(): void {
    const whole = this.whole;
    if (!this.going || this.dropped || whole === undefined) return;
    this.whole = undefined;
    this.send(whole ?? undefined);
  }
}

/** A refusal's code and reason; `logReason` false keeps the reason out of the access log. */
interface Refusal {
  code: LocalReplyCode;
  reason: string;
  logReason?: boolean;
  routeName?: string | undefined;
}

/** What {@link OutboundProxy.routeOf} decided: where the request goes, or its local reply. */
type Routing = { path: string; requestId: string; upstreamName: string } & (
  | { refusal: Refusal }
  | {
      up: UpstreamRuntime;
      view: RequestView;
      route: MatchedRoute | undefined;
      subset: string | undefined;
      endpoint: RuntimeEndpoint;
      routeName: string | undefined;
      headers: Record<string, string | string[]>;
      upstreamPath: string;
    }
);

/** Logs a refusal answered with `status`. */
function logRefusal(log: Log, refusal: Refusal, status: number): void {
  log(
    status,
    refusal.code,
    refusal.logReason === false ? undefined : refusal.reason,
    refusal.routeName ? { route: refusal.routeName } : undefined,
  );
}

type PendingAdmission = Exclude<ReturnType<CircuitBreaker['acquire']>, string | undefined>;

/**
 * Waits for the circuit breaker to hand a pending request a slot, until the request's deadline or
 * until its client goes away; a request that does not get to go leaves the queue (or hands on a slot
 * it was given meanwhile).
 */
function waitForSlot(
  pending: PendingAdmission,
  breaker: CircuitBreaker,
  deadline: number,
  res: DownstreamResponse,
): Promise<'admitted' | 'timeout' | 'gone'> {
  return new Promise((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (how: 'admitted' | 'timeout' | 'gone') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      res.off('close', onClose);
      unwatch();
      if (how !== 'admitted' && !pending.cancel()) breaker.release();
      resolve(how);
    };
    const onClose = () => settle('gone');
    res.once('close', onClose);
    // A pipelined request's response has no 'close' of its own: its connection's end is watched too.
    const unwatch = onClientConnectionClosed(res, onClose);
    if (deadline !== Number.POSITIVE_INFINITY) timer = setTimeout(() => settle('timeout'), Math.max(0, deadline - performance.now()));
    if (clientGone(res)) settle('gone');
    void pending.admitted.then(() => settle('admitted'));
  });
}
