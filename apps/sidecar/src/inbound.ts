import { createServer as createHttpServer, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createH2Server, type Http2Server } from 'node:http2';
import type { Socket } from 'node:net';
import { connect as connectTcp } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, type Server as TlsServer } from 'node:tls';
import type { MtlsMode } from '@novamesh/contracts';
import type { Authorizer, RateLimiter, RequestView } from '@novamesh/dataplane';
import { attachIdentity, type MtlsPeer, tlsContextFor } from '@novamesh/identity';
import { Pool } from 'undici';
import type { AccessLog } from './access-log';
import {
  type DownstreamRequest,
  type DownstreamResponse,
  type ForwardRequest,
  forward,
  forwardableHeaders,
  forwardWithTrailers,
  hasBody,
} from './forward';
import { H2Endpoint } from './h2-upstream';
import type { IdentityHolder } from './identity-holder';
import type { InFlightLimit } from './in-flight';
import { sendLocalReply } from './local-reply';
import type { SidecarMetrics } from './metrics';
import { ProtocolListener } from './protocol-listener';

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
      onPeerRefused: (reason: string, peer: string | undefined, remote: string | undefined) => void;
    },
  ) {
    const { hostname, port } = new URL(deps.appOrigin);
    this.app =
      deps.appProtocol === 'grpc'
        ? { h2: new H2Endpoint(deps.appOrigin, () => connectTcp({ host: hostname.replace(/^\[|\]$/g, ''), port: Number(port) })) }
        : { pool: new Pool(deps.appOrigin, { keepAliveTimeout: 30_000, connect: { timeout: 2_000 } }) };
    const handler = deps.inFlight.guard('inbound', (req, res) => this.handle(req, res));
    this.http = createHttpServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, handler);
    this.h2 = createH2Server({}, handler);
    this.listener = new ProtocolListener({ http1: this.http, h2c: this.h2, onTls: (socket) => this.acceptTls(socket) });
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
    });
    const { accepted, detach } = attachIdentity(tls, this.deps.identity, {
      onRefused: (r) => this.deps.onPeerRefused(r.reason, r.peer.spiffeId, r.remoteAddress),
    });
    tls.on('secureConnection', (socket: TLSSocket) => {
      const peer = accepted(socket);
      if (!peer) return;
      (socket as PeerSocket)[PEER] = peer;
      (socket.alpnProtocol === 'h2' ? this.h2 : this.http).emit('connection', socket);
    });
    tls.on('tlsClientError', (err, socket) => {
      this.deps.onPeerRefused(`TLS handshake failed: ${err.message}`, undefined, socket.remoteAddress);
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

  private async handle(req: DownstreamRequest, res: DownstreamResponse): Promise<void> {
    const started = performance.now();
    const policy = this.deps.policy();
    const peer = (req.socket as PeerSocket)[PEER];
    const principal = peer?.spiffeId;
    const { path, query } = splitUrl(req.url ?? '/');
    const log = (status: number, error?: string, reason?: string, extra?: Record<string, unknown>) => {
      const ms = performance.now() - started;
      this.deps.metrics.inbound(status, error, ms);
      this.deps.accessLog.write({ direction: 'inbound', method: req.method, path, status, ms, peer: principal, error, reason, ...extra });
    };
    if (!policy) {
      sendLocalReply(req, res, 'NO_SNAPSHOT', 'this sidecar has not received its configuration yet');
      return log(503, 'NO_SNAPSHOT');
    }
    if (!peer && policy.mode === 'strict') {
      const reason = 'this service accepts only mutual TLS (MutualTLSPolicy mode strict)';
      sendLocalReply(req, res, 'MTLS_REQUIRED', reason);
      return log(403, 'MTLS_REQUIRED', reason);
    }
    const view = requestView(req, path, query);
    if (principal) view.principal = principal;
    if (req.socket.localPort) view.port = req.socket.localPort;
    const decision = policy.authorizer.check(view);
    const audit = decision.audit.length ? { audit: decision.audit } : undefined;
    if (!decision.allowed) {
      sendLocalReply(req, res, 'RBAC_DENIED', decision.reason);
      return log(403, 'RBAC_DENIED', decision.reason, audit);
    }
    // RateLimit-* headers for the workload's response, when a limit with sendHeaders admitted the request.
    let limitHeaders: Record<string, string> | undefined;
    if (policy.rateLimits) {
      const checked = policy.rateLimits.check(view);
      const limited = checked instanceof Promise ? await checked : checked;
      if (limited?.allowed === false) {
        this.deps.metrics.rateLimited(limited.policy, limited.limit);
        sendLocalReply(req, res, 'RATE_LIMITED', limited.reason, limited.headers, limited.status);
        return log(limited.status, 'RATE_LIMITED', limited.reason, audit);
      }
      limitHeaders = limited?.headers;
    }
    const headers = forwardableHeaders(req.headers);
    const own = this.deps.ownSpiffeId();
    // Envoy's x-forwarded-client-cert: the workload learns who called it without parsing TLS.
    if (principal) headers['x-forwarded-client-cert'] = `${own ? `By=${own};` : ''}URI=${principal}`;
    else delete headers['x-forwarded-client-cert'];
    const forwarded: ForwardRequest = {
      method: view.method,
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
    if (outcome.error && outcome.status === 0 && outcome.error !== 'DOWNSTREAM_DISCONNECT') {
      const reason = `the workload at ${this.deps.appOrigin} failed: ${outcome.reason}`;
      sendLocalReply(req, res, 'APP_UNAVAILABLE', reason);
      return log(503, 'APP_UNAVAILABLE', reason, audit);
    }
    log(outcome.status, outcome.error, outcome.reason, audit);
  }
}

/** What the data plane's decisions read of a request (no copies of node:http's objects). */
export function requestView(req: DownstreamRequest, path: string, query: string): RequestView {
  const view: RequestView = { method: req.method ?? 'GET', path, query, headers: req.headers };
  if (req.socket.remoteAddress) view.sourceIp = req.socket.remoteAddress;
  return view;
}

/** `/a/b?x=1` → path `/a/b`, query `x=1`. */
export function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}
