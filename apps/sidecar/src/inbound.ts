import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket, type Server as TlsServer } from 'node:tls';
import type { MtlsMode } from '@novamesh/contracts';
import type { Authorizer, RequestView } from '@novamesh/dataplane';
import { attachIdentity, type MtlsPeer, tlsContextFor } from '@novamesh/identity';
import { Pool } from 'undici';
import type { AccessLog } from './access-log';
import { forward, forwardableHeaders, hasBody } from './forward';
import type { IdentityHolder } from './identity-holder';
import { sendLocalReply } from './local-reply';
import type { SidecarMetrics } from './metrics';

/** What the inbound side enforces, compiled from the snapshot's `inbound` section. */
export interface InboundPolicy {
  mode: MtlsMode;
  authorizer: Authorizer;
}

const TLS_HANDSHAKE = 0x16;

/**
 * The listener other sidecars (and, when permitted, plaintext clients) call. One port serves both:
 * the first byte tells a TLS ClientHello (0x16) from plain HTTP, as Istio's permissive mode does.
 * TLS connections must present a mesh certificate (chain to the trust bundle, not revoked); then the
 * mTLS mode and the authorization policy decide, per request, with the peer's SPIFFE ID. Allowed
 * requests go to the workload on loopback over pooled keep-alive connections.
 */
export class InboundListener {
  private readonly net: NetServer;
  private readonly http: HttpServer;
  private tls: TlsServer | undefined;
  private detachTls: (() => void) | undefined;
  private readonly peers = new WeakMap<Socket, MtlsPeer>();
  private readonly app: Pool;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly deps: {
      appOrigin: string;
      ownSpiffeId: () => string | undefined;
      policy: () => InboundPolicy | undefined;
      identity: IdentityHolder;
      metrics: SidecarMetrics;
      accessLog: AccessLog;
      onPeerRefused: (reason: string, peer: string | undefined, remote: string | undefined) => void;
    },
  ) {
    this.app = new Pool(deps.appOrigin, { keepAliveTimeout: 30_000, connect: { timeout: 2_000 } });
    this.http = createHttpServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => void this.handle(req, res));
    this.net = createNetServer({ pauseOnConnect: true }, (socket) => this.accept(socket));
    deps.identity.subscribe((change) => {
      if (change === 'certificate' && !this.tls) this.ensureTls();
    });
    this.ensureTls();
  }

  async listen(port: number, host: string): Promise<number> {
    this.net.listen(port, host);
    await once(this.net, 'listening');
    return (this.net.address() as { port: number }).port;
  }

  /** Stops accepting, lets in-flight requests finish for up to `graceMs`, then closes what is left. */
  async close(graceMs: number): Promise<void> {
    this.net.close();
    this.http.closeIdleConnections();
    const deadline = Date.now() + graceMs;
    while (this.sockets.size > 0 && Date.now() < deadline) {
      this.http.closeIdleConnections();
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const s of this.sockets) s.destroy();
    this.detachTls?.();
    await this.app.close().catch(() => undefined);
  }

  private ensureTls(): void {
    if (this.tls || !this.deps.identity.ready) return;
    const tls = createTlsServer({ ...tlsContextFor(this.deps.identity), requestCert: true, rejectUnauthorized: true });
    const { accepted, detach } = attachIdentity(tls, this.deps.identity, {
      onRefused: (r) => this.deps.onPeerRefused(r.reason, r.peer.spiffeId, r.remoteAddress),
    });
    tls.on('secureConnection', (socket: TLSSocket) => {
      const peer = accepted(socket);
      if (!peer) return;
      this.peers.set(socket, peer);
      this.http.emit('connection', socket);
    });
    tls.on('tlsClientError', (err, socket) => {
      this.deps.onPeerRefused(`TLS handshake failed: ${err.message}`, undefined, socket.remoteAddress);
    });
    this.tls = tls;
    this.detachTls = detach;
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.once('readable', () => {
      const first = socket.read(1) as Buffer | null;
      if (!first) return socket.destroy();
      socket.unshift(first);
      if (first[0] === TLS_HANDSHAKE) {
        const mode = this.deps.policy()?.mode;
        if (!this.tls || mode === 'disable') {
          this.deps.onPeerRefused(
            mode === 'disable' ? 'mTLS is disabled for this service' : 'no certificate yet',
            undefined,
            socket.remoteAddress,
          );
          return socket.destroy();
        }
        this.tls.emit('connection', socket);
      } else {
        this.http.emit('connection', socket);
      }
      socket.resume();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const policy = this.deps.policy();
    const peer = this.peers.get(req.socket);
    const principal = peer?.spiffeId;
    const { path, query } = splitUrl(req.url ?? '/');
    const log = (status: number, error?: string, reason?: string, extra?: Record<string, unknown>) => {
      const ms = performance.now() - started;
      this.deps.metrics.inbound(status, error, ms);
      this.deps.accessLog.write({ direction: 'inbound', method: req.method, path, status, ms, peer: principal, error, reason, ...extra });
    };
    if (!policy) {
      sendLocalReply(res, 'NO_SNAPSHOT', 'this sidecar has not received its configuration yet');
      return log(503, 'NO_SNAPSHOT');
    }
    if (!peer && policy.mode === 'strict') {
      const reason = 'this service accepts only mutual TLS (MutualTLSPolicy mode strict)';
      sendLocalReply(res, 'MTLS_REQUIRED', reason);
      return log(403, 'MTLS_REQUIRED', reason);
    }
    const view = requestView(req, path, query);
    if (principal) view.principal = principal;
    if (req.socket.localPort) view.port = req.socket.localPort;
    const decision = policy.authorizer.check(view);
    const audit = decision.audit.length ? { audit: decision.audit } : undefined;
    if (!decision.allowed) {
      sendLocalReply(res, 'RBAC_DENIED', decision.reason);
      return log(403, 'RBAC_DENIED', decision.reason, audit);
    }
    const headers = forwardableHeaders(req.headers);
    const own = this.deps.ownSpiffeId();
    // Envoy's x-forwarded-client-cert: the workload learns who called it without parsing TLS.
    if (principal) headers['x-forwarded-client-cert'] = `${own ? `By=${own};` : ''}URI=${principal}`;
    else delete headers['x-forwarded-client-cert'];
    const outcome = await forward(this.app, { method: view.method, path: req.url ?? '/', headers, body: hasBody(req) ? req : null }, res);
    if (outcome.error && outcome.status === 0 && outcome.error !== 'DOWNSTREAM_DISCONNECT') {
      const reason = `the workload at ${this.deps.appOrigin} failed: ${outcome.reason}`;
      sendLocalReply(res, 'APP_UNAVAILABLE', reason);
      return log(503, 'APP_UNAVAILABLE', reason, audit);
    }
    log(outcome.status, outcome.error, outcome.reason, audit);
  }
}

/** What the data plane's decisions read of a request (no copies of node:http's objects). */
export function requestView(req: IncomingMessage, path: string, query: string): RequestView {
  const view: RequestView = { method: req.method ?? 'GET', path, query, headers: req.headers };
  if (req.socket.remoteAddress) view.sourceIp = req.socket.remoteAddress;
  return view;
}

/** `/a/b?x=1` → path `/a/b`, query `x=1`. */
export function splitUrl(url: string): { path: string; query: string } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: '' } : { path: url.slice(0, q), query: url.slice(q + 1) };
}
