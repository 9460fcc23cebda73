import type { Server as HttpServer, IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createH2Server, type Http2Server } from 'node:http2';
import type { Socket } from 'node:net';
import { connect as connectTcp } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, type Server as TlsServer } from 'node:tls';
import type { MtlsMode } from '@novamesh/contracts';
import type { Authorizer, RateLimiter, RequestView } from '@novamesh/dataplane';
import { attachIdentity, type MtlsPeer, tlsContextFor } from '@novamesh/identity';
import { Pool } from 'undici';
import type { AccessLog, AccessRecord } from './access-log';
import { type DirectDecision, type DirectTarget, FastPath, type FastPathHost } from './fast-path';
import {
  absoluteForm,
  type DownstreamRequest,
  type DownstreamResponse,
  type ForwardRequest,
  forward,
  forwardableHeaders,
  forwardWithTrailers,
  hasBody,
  requestCodingProblem,
  requestHostProblem,
  splitUrl,
  workloadFailure,
} from './forward';
import { H2Endpoint } from './h2-upstream';
import type { IdentityHolder } from './identity-holder';
import type { InFlightLimit } from './in-flight';
import { LOCAL_REPLIES, sendLocalReply } from './local-reply';
import type { SidecarMetrics } from './metrics';
import { createHttp1Server, DEFAULT_FILTERS_TIMEOUT_MS, ProtocolListener } from './protocol-listener';
import { RawPool } from './raw-pool';
import { acceptUpgrades, CONNECT_REFUSED, refuseConnects, refuseUpgrade, relayUpgrade, upgradeProblem } from './upgrade';
import { type ConnectOptions, openSocket } from './upstream-runtime';

/** What the inbound side enforces, compiled from the snapshot's `inbound` section. */
export interface InboundPolicy {
  mode: MtlsMode;
  authorizer: Authorizer;
  /** The service's RateLimitPolicies; undefined when it has none (the plain path). */
  rateLimits: RateLimiter | undefined;
}

/** The verified peer of a mutual-TLS connection, kept on its socket (node:http2's socket proxy passes symbols through). */
const PEER = Symbol('novamesh.peer');
type PeerSocket = Socket & { [PEER]?: MtlsPeer };

/** undici's keepAliveTimeout of the workload pool, and its keepAliveMaxTimeout and headers/body timeouts. */
const APP_IDLE_MS = 30_000;
const APP_MAX_IDLE_MS = 600_000;
const APP_BUSY_MS = 300_000;
const APP_CONNECT_TIMEOUT_MS = 2_000;

/** What one request is, for the inbound checks (both paths). */
interface InboundRequest {
  method: string;
  path: string;
  query: string;
  headers: IncomingHttpHeaders;
  socket: Socket;
}

/**
 * The inbound checks of one request, in order: a snapshot, the mTLS mode, authorization, rate
 * limits. A {@link DirectDecision} without `reply` lets the request through; a promise only when a
 * global rate limit is asked. Shared by the node:http path and the fast path, so both decide alike.
 */
function checkInbound(
  policy: InboundPolicy | undefined,
  req: InboundRequest,
  metrics: SidecarMetrics,
): DirectDecision | Promise<DirectDecision> {
  const peer = (req.socket as PeerSocket)[PEER];
  const principal = peer?.spiffeId;
  if (!policy) {
    const reply = { code: 'NO_SNAPSHOT', reason: 'this sidecar has not received its configuration yet', logReason: false } as const;
    return { reply, extra: { peer: principal } };
  }
  if (!peer && policy.mode === 'strict') {
    const reason = 'this service accepts only mutual TLS (MutualTLSPolicy mode strict)';
    return { reply: { code: 'MTLS_REQUIRED', reason }, extra: { peer: principal } };
  }
  const view: RequestView = { method: req.method, path: req.path, query: req.query, headers: req.headers };
  if (req.socket.remoteAddress) view.sourceIp = req.socket.remoteAddress;
  if (principal) view.principal = principal;
  if (req.socket.localPort) view.port = req.socket.localPort;
  const decision = policy.authorizer.check(view);
  const extra: Partial<AccessRecord> = decision.audit.length ? { peer: principal, audit: decision.audit } : { peer: principal };
  if (!decision.allowed) return { reply: { code: 'RBAC_DENIED', reason: decision.reason }, extra };
  if (!policy.rateLimits) return { extra };
  const checked = policy.rateLimits.check(view);
  const limited = (l: Awaited<ReturnType<RateLimiter['check']>>): DirectDecision => {
    if (l?.allowed === false) {
      metrics.rateLimited(l.policy, l.limit);
      return { reply: { code: 'RATE_LIMITED', reason: l.reason, headers: l.headers, status: l.status }, extra };
    }
    // RateLimit-* headers for the workload's response, when a limit with sendHeaders admitted the request.
    return { responseHeaders: l?.headers, extra };
  };
  return checked instanceof Promise ? checked.then(limited) : limited(checked);
}

/** The request headers for the workload: hop-by-hop ones dropped, x-forwarded-client-cert set from the verified peer only. */
function workloadHeaders(
  headers: IncomingHttpHeaders,
  principal: string | undefined,
  own: string | undefined,
): Record<string, string | string[]> {
  const out = forwardableHeaders(headers);
  // Envoy's x-forwarded-client-cert: the workload learns who called it without parsing TLS.
  if (principal) out['x-forwarded-client-cert'] = `${own ? `By=${own};` : ''}URI=${principal}`;
  else delete out['x-forwarded-client-cert'];
  return out;
}

/**
 * The listener other sidecars (and, when permitted, plaintext clients) call. One port serves
 * everything: the first bytes tell a TLS ClientHello (0x16), an HTTP/2 preface (gRPC in plaintext)
 * and HTTP/1.1 apart, as Istio's permissive mode does; TLS offers h2 and http/1.1 by ALPN. TLS
 * connections must present a mesh certificate (chain to the trust bundle, not revoked); then the
 * mTLS mode, the authorization policy and the rate limits decide, per request, with the peer's SPIFFE
 * ID. Allowed requests go to the workload on loopback over pooled keep-alive connections (HTTP/2 without TLS
 * for a gRPC workload).
 */
export class InboundListener {
  private readonly listener: ProtocolListener;
  private readonly http: HttpServer;
  private readonly h2: Http2Server;
  private tls: TlsServer | undefined;
  private detachTls: (() => void) | undefined;
  /** The workload: an HTTP/1.1 keep-alive pool, or one HTTP/2 (h2c) session for a gRPC workload. */
  private readonly app: { pool: Pool; h2?: undefined } | { pool?: undefined; h2: H2Endpoint };
  /** The workload's address and how connections to it are opened (plain TCP): the fast path's and upgraded requests' own. */
  private readonly appAddress: { host: string; port: number };
  private readonly appConnect: ConnectOptions;
  /** The HTTP/1.1 fast path (HTTP workloads, `fastPath`): its raw keep-alive sockets to the workload. */
  private readonly fast: { path: FastPath; raw: RawPool } | undefined;

  constructor(
    private readonly deps: {
      appOrigin: string;
      /** `grpc`: the workload speaks HTTP/2 without TLS (h2c). */
      appProtocol: 'http' | 'grpc';
      ownSpiffeId: () => string | undefined;
      policy: () => InboundPolicy | undefined;
      identity: IdentityHolder;
      metrics: SidecarMetrics;
      accessLog: AccessLog;
      inFlight: InFlightLimit;
      /** SIDECAR_FAST_PATH and SIDECAR_INBOUND_FAST_PATH: HTTP/1.1 requests skip node:http and undici (see fast-path.ts). */
      fastPath?: boolean;
      /** SIDECAR_HEADERS_TIMEOUT: a request head incomplete after this long gets 408 (both paths). */
      headersTimeoutMs: number;
      /**
       * SIDECAR_LISTENER_FILTERS_TIMEOUT: a connection whose protocol is undecided after this long is
       * closed; so is one whose TLS handshake has not completed after this long.
       */
      listenerFiltersTimeoutMs?: number;
      /** SIDECAR_IDLE_TIMEOUT: an HTTP/1.1 keep-alive connection idle, or an HTTP/2 session without an open stream, this long is closed. */
      idleTimeoutMs: number;
      /** SIDECAR_TUNNEL_IDLE_TIMEOUT: a WebSocket tunnel without a byte either way this long is closed. */
      tunnelIdleTimeoutMs: number;
      onPeerRefused: (reason: string, peer: string | undefined, remote: string | undefined) => void;
    },
  ) {
    const { hostname, port } = new URL(deps.appOrigin);
    this.app =
      deps.appProtocol === 'grpc'
        ? { h2: new H2Endpoint(deps.appOrigin, () => connectTcp({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) })) }
        : { pool: new Pool(deps.appOrigin, { keepAliveTimeout: 30_000, connect: { timeout: 2_000 } }) };
    const handler = deps.inFlight.guard('inbound', (req, res) => this.handle(req, res));
    this.http = createHttp1Server(deps.headersTimeoutMs, deps.idleTimeoutMs, handler);
    acceptUpgrades(
      this.http,
      deps.inFlight.guardUpgrade('inbound', (req, socket, head) => void this.upgrade(req, socket, head)),
    );

    this.appAddress = { host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) };
    this.appConnect = { mtls: false, identity: deps.identity, serverSpiffeId: '', timeoutMs: APP_CONNECT_TIMEOUT_MS, alpn: [] };
    this.h2 = createH2Server({}, handler);
    refuseConnects(this.http, this.h2, (req, status) => this.begin(req).log(status, 'BAD_REQUEST', CONNECT_REFUSED));
    this.fast = deps.fastPath && deps.appProtocol === 'http' ? this.fastPath(this.appAddress.host, this.appAddress.port) : undefined;
    this.listener = new ProtocolListener({
      http1: this.http,
      h2c: this.h2,
      onTls: (socket) => this.acceptTls(socket),
      http1Front: this.fast?.path,
      filtersTimeoutMs: deps.listenerFiltersTimeoutMs,
      onFiltersTimeout: () => deps.metrics.listenerFiltersTimeouts.labels('inbound').inc(),
      idleTimeoutMs: deps.idleTimeoutMs,
    });
    deps.identity.subscribe((change) => {
      if (change === 'certificate' && !this.tls) this.ensureTls();
    });
    this.ensureTls();
  }

  listen(port: number, host: string): Promise<number> {
    return this.listener.listen(port, host);
  }

  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then closes what is left. */
  async close(graceMs: number): Promise<void> {
    await this.listener.close(graceMs);
    this.fast?.raw.close();
    this.detachTls?.();
    this.app.h2?.close();
    await this.app.pool?.close().catch(() => undefined);
  }

  private ensureTls(): void {
    if (this.tls || !this.deps.identity.ready) return;
    const tls = createTlsServer({
      ...tlsContextFor(this.deps.identity),
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: ['h2', 'http/1.1'],
      // A peer that stops in the middle of its handshake holds the socket no longer than one that
      // sends nothing at all (node's own default is 120 s).
      handshakeTimeout: this.deps.listenerFiltersTimeoutMs ?? DEFAULT_FILTERS_TIMEOUT_MS,
    });
    const { accepted, detach } = attachIdentity(tls, this.deps.identity, {
      onRefused: (r) => this.deps.onPeerRefused(r.reason, r.peer.spiffeId, r.remoteAddress),
    });
    tls.on('secureConnection', (socket: TLSSocket) => {
      const peer = accepted(socket);
      if (!peer) return;
      (socket as PeerSocket)[PEER] = peer;
      if (socket.alpnProtocol === 'h2') this.h2.emit('connection', socket);
      else if (this.fast) {
        socket.on('error', () => socket.destroy());
        this.fast.path.accept(socket);
      } else this.http.emit('connection', socket);
    });
    tls.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT') this.deps.metrics.listenerFiltersTimeouts.labels('inbound').inc();
      else this.deps.onPeerRefused(`TLS handshake failed: ${err.message}`, undefined, socket.remoteAddress);
      // A failed handshake ends its connection; a timed-out one node only reports.
      socket.destroy();
    });
    this.tls = tls;
    this.detachTls = detach;
  }

  private acceptTls(socket: Socket): void {
    const mode = this.deps.policy()?.mode;
    if (!this.tls || mode === 'disable') {
      this.deps.onPeerRefused(
        mode === 'disable' ? 'mTLS is disabled for this service' : 'no certificate yet',
        undefined,
        socket.remoteAddress,
      );
      socket.destroy();
      return;
    }
    this.tls.emit('connection', socket);
  }

  /** The fast path's host and target: the same checks, metrics and access log as {@link handle}, the workload over raw sockets. */
  private fastPath(host: string, port: number): { path: FastPath; raw: RawPool } {
    const { metrics, accessLog, inFlight } = this.deps;
    const fastHost: FastPathHost = {
      log: (r) => {
        const ms = performance.now() - r.started;
        metrics.inbound(r.status, r.error, ms);
        const { peer, ...extra } = r.extra ?? {};
        accessLog.write({
          direction: 'inbound',
          method: r.method,
          path: r.path,
          status: r.status,
          ms,
          peer,
          error: r.error,
          reason: r.reason,
          ...extra,
        });
      },
      admit: () => inFlight.tryAcquire('inbound'),
      release: () => inFlight.release(),
      maxInFlight: () => inFlight.max,
      metrics: () => metrics,
      counted: (handoff) => {
        if (handoff === undefined) metrics.inboundFastPathRequests.inc();
        else metrics.inboundFastPathHandoffs.labels(handoff).inc();
      },
    };
    const raw = new RawPool(() => openSocket(this.appConnect, host, port), APP_IDLE_MS, APP_MAX_IDLE_MS, APP_BUSY_MS);
    const target: DirectTarget = {
      kind: 'direct',
      endpoint: { id: 'app', raw, active: 0 },
      decide: (head, socket, path, query) => {
        const checked = checkInbound(this.deps.policy(), { method: head.method, path, query, headers: head.headers, socket }, metrics);
        const allowed = (d: DirectDecision): DirectDecision => {
          if (d.reply === undefined)
            d.headers = workloadHeaders(head.headers, (socket as PeerSocket)[PEER]?.spiffeId, this.deps.ownSpiffeId());
          return d;
        };
        return checked instanceof Promise ? checked.then(allowed) : allowed(checked);
      },
      failed: (reason) => `the workload at ${this.deps.appOrigin} failed: ${reason}`,
    };
    return { path: new FastPath(fastHost, this.http, target), raw };
  }

  /**
   * The request's path and query, and how it is logged. An absolute-form target is judged and
   * forwarded by its path, its authority as the host (RFC 9112 §3.2.2), so `GET http://x/admin`
   * meets the same rules as `GET /admin`; `invalid` says why when the target is neither, or the Host
   * is refused ({@link requestHostProblem}).
   */
  private begin(req: DownstreamRequest): {
    path: string;
    query: string;
    invalid: string | undefined;
    principal: string | undefined;
    log: InboundLog;
  } {
    const started = performance.now();
    const principal = (req.socket as PeerSocket)[PEER]?.spiffeId;
    let target = req.url ?? '/';
    let invalid = requestHostProblem(req);
    if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') {
      const abs = absoluteForm(target);
      if (abs) {
        req.url = target = abs.path;
        req.headers.host = abs.authority;
      } else invalid = INVALID_TARGET;
    }
    const { path, query } = splitUrl(target);
    const log: InboundLog = (status, error, reason, extra) => {
      const ms = performance.now() - started;
      this.deps.metrics.inbound(status, error, ms);
      this.deps.accessLog.write({ direction: 'inbound', method: req.method, path, status, ms, peer: principal, error, reason, ...extra });
    };
    return { path, query, invalid, principal, log };
  }

  /** {@link checkInbound} of one request on the node:http paths, with the access-log fields it adds (the peer is logged anyway). */
  private async verdictOf(
    req: DownstreamRequest,
    path: string,
    query: string,
  ): Promise<{ verdict: DirectDecision; audit: Partial<AccessRecord> }> {
    const request = { method: req.method ?? 'GET', path, query, headers: req.headers, socket: req.socket as Socket };
    const checked = checkInbound(this.deps.policy(), request, this.deps.metrics);
    const verdict = checked instanceof Promise ? await checked : checked;
    const { peer: _peer, ...audit } = verdict.extra ?? {};
    return { verdict, audit };
  }

  private async handle(req: DownstreamRequest, res: DownstreamResponse): Promise<void> {
    const { path, query, invalid, principal, log } = this.begin(req);
    if (invalid) {
      sendLocalReply(req, res, 'BAD_REQUEST', invalid);
      return log(400, 'BAD_REQUEST', invalid);
    }
    const coding = requestCodingProblem(req);
    if (coding) {
      sendLocalReply(req, res, 'UNSUPPORTED_TRANSFER_CODING', coding, undefined, 501);
      return log(501, 'UNSUPPORTED_TRANSFER_CODING', coding);
    }
    const { verdict, audit } = await this.verdictOf(req, path, query);
    const reply = verdict.reply;
    if (reply) {
      sendLocalReply(req, res, reply.code, reply.reason, reply.headers, reply.status);
      return log(reply.status ?? LOCAL_REPLIES[reply.code], reply.code, reply.logReason === false ? undefined : reply.reason, audit);
    }
    const limitHeaders = verdict.responseHeaders;
    const headers = workloadHeaders(req.headers, principal, this.deps.ownSpiffeId());
    const forwarded: ForwardRequest = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers,
      body: hasBody(req) ? req : null,
      onResponseHeaders: limitHeaders && ((h) => Object.assign(h, limitHeaders)),
    };
    const outcome = this.app.h2
      ? await this.app.h2.forward(forwarded, res)
      : req.httpVersionMajor === 2
        ? await forwardWithTrailers(this.app.pool, forwarded, res)
        : await forward(this.app.pool, forwarded, res as ServerResponse);
    if (outcome.error === 'UNSUPPORTED_TRANSFER_CODING') {
      const reason = `${outcome.reason} (the workload at ${this.deps.appOrigin})`;
      sendLocalReply(req, res, outcome.error, reason);
      return log(LOCAL_REPLIES[outcome.error], outcome.error, reason, audit);
    }
    if (outcome.error && outcome.status === 0 && outcome.error !== 'DOWNSTREAM_DISCONNECT') {
      const reason = `the workload at ${this.deps.appOrigin} failed: ${outcome.reason}`;
      const local = workloadFailure(outcome.error);
      sendLocalReply(req, res, local, reason);
      return log(LOCAL_REPLIES[local], local, reason, audit);
    }
    log(outcome.status, outcome.error, outcome.reason, audit);
  }

  /**
   * An HTTP/1.1 upgrade request (WebSocket) from a peer: the same checks as any request (mTLS mode,
   * authorization with the peer's identity, rate limits), then a connection of its own to the
   * workload, which becomes a tunnel when the workload answers 101.
   */
  private async upgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const { path, query, invalid, principal, log } = this.begin(req);
    const upgrade = req.headers.upgrade;
    if (invalid) return log(refuseUpgrade(socket, 'BAD_REQUEST', invalid), 'BAD_REQUEST', invalid, { upgrade });
    const problem = upgradeProblem(req);
    if (problem) return log(refuseUpgrade(socket, 'BAD_REQUEST', problem), 'BAD_REQUEST', problem, { upgrade });
    const { verdict, audit } = await this.verdictOf(req, path, query);
    const reply = verdict.reply;
    if (reply) {
      const status = refuseUpgrade(socket, reply.code, reply.reason, reply.headers, reply.status);
      return log(status, reply.code, reply.logReason === false ? undefined : reply.reason, { ...audit, upgrade });
    }
    const app = this.appAddress;
    const outcome = await relayUpgrade(socket, head, {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers: workloadHeaders(req.headers, principal, this.deps.ownSpiffeId()),
      protocol: upgrade ?? '',
      connect: () => openSocket(this.appConnect, app.host, app.port).socket,
      timeoutMs: APP_BUSY_MS,
      responseHeaders: verdict.responseHeaders,
      idleTimeoutMs: this.deps.tunnelIdleTimeoutMs,
    });
    if (outcome.error && outcome.status === 0 && outcome.error !== 'DOWNSTREAM_DISCONNECT') {
      const reason = `the workload at ${this.deps.appOrigin} failed: ${outcome.reason}`;
      const local = workloadFailure(outcome.error);
      return log(refuseUpgrade(socket, local, reason), local, reason, { ...audit, upgrade });
    }
    log(outcome.status, outcome.error, outcome.reason, { ...audit, upgrade });
  }
}

const INVALID_TARGET = 'the request target must be a path or an absolute URL';

type InboundLog = (status: number, error?: string, reason?: string, extra?: Partial<AccessRecord>) => void;

/** What the data plane's decisions read of a request (no copies of node:http's objects). */
export function requestView(req: DownstreamRequest, path: string, query: string): RequestView {
  const view: RequestView = { method: req.method ?? 'GET', path, query, headers: req.headers };
  if (req.socket.remoteAddress) view.sourceIp = req.socket.remoteAddress;
  return view;
}
