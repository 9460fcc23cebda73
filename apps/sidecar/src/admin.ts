import { once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { DataPlane } from './data-plane';
import type { IdentityHolder } from './identity-holder';
import type { SidecarMetrics } from './metrics';
import type { SnapshotStore } from './snapshot-store';

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * The admin port (loopback): `/ready` (200 once a snapshot is in use and the listeners are up),
 * `/config_dump` (the snapshot in use, the last refusal, the identity without its key),
 * `/clusters` (every upstream's endpoints with health, mTLS, in-flight requests and outlier
 * ejection state, and its circuit breaker's limits, counters and overflows) and `/metrics` (Prometheus text).
 */
export class AdminServer {
  private readonly server: Server;
  listening = false;

  constructor(
    private readonly deps: {
      sidecarId: string;
      service: string;
      store: SnapshotStore;
      dataPlane: DataPlane;
      identity: IdentityHolder;
      metrics: SidecarMetrics;
      ports: () => Record<string, number>;
      /** Started with a join token: not ready until it has a mesh certificate (callers originate mTLS to it). */
      needsCertificate: boolean;
      /** SIGTERM was received: not ready while it drains. */
      draining: () => boolean;
    },
  ) {
    // The admin pages do not depend on the Host (node:http would answer a request without one with a bare 400).
    this.server = createServer({ requireHostHeader: false }, (req, res) => void this.handle(req.method ?? 'GET', req.url ?? '/', res));
  }

  async listen(port: number, host: string): Promise<number> {
    this.server.listen(port, host);
    await once(this.server, 'listening');
    this.listening = true;
    return (this.server.address() as { port: number }).port;
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
  }

  private async handle(method: string, url: string, res: ServerResponse): Promise<void> {
    const [path, query] = url.split('?', 2);
    // Every page is read-only and takes no parameters: anything else is refused, saying why.
    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return json(res, 405, { error: `${method} is not supported: the admin pages are read-only (GET)` });
    }
    if (query) {
      const names = [...new URLSearchParams(query).keys()];
      return json(res, 400, { error: `${path} takes no query parameters (got ${names.join(', ') || query})` });
    }
    const { store, dataPlane, identity } = this.deps;
    switch (path) {
      case '/ready': {
        // As Envoy's /ready: not while draining, nor before the configuration and certificates it needs.
        const snap = store.snapshot;
        if (this.deps.draining()) return json(res, 503, { ready: false, reason: 'draining (SIGTERM): finishing the requests in flight' });
        const noCertificate = this.deps.needsCertificate && !identity.ready;
        // A refusal first: it is for good, and the first sidecar of a service gets no snapshot without it
        // (proxy-config builds snapshots for registered services, and it registers only with a certificate).
        if (noCertificate && identity.refusal !== undefined)
          return json(res, 503, {
            ready: false,
            reason: `no mesh certificate: the certificate authority refused the join token (${identity.refusal}); restart the sidecar with a new one (meshctl token create --service <name>)`,
          });
        if (!snap) return json(res, 503, { ready: false, reason: 'no snapshot yet (waiting for proxy-config)' });
        if (noCertificate)
          return json(res, 503, { ready: false, reason: 'no mesh certificate yet (waiting for the certificate authority)' });
        return json(res, 200, { ready: true, version: snap.version });
      }
      case '/config_dump': {
        let cert: Record<string, unknown> | undefined;
        if (identity.ready) {
          const c = identity.current();
          cert = { spiffeId: c.spiffeId, serial: c.serial, notAfter: c.notAfter.toISOString(), source: identity.kind };
        }
        return json(res, 200, {
          sidecar: this.deps.sidecarId,
          service: this.deps.service,
          ports: this.deps.ports(),
          snapshot: store.snapshot ?? null,
          rejected: store.rejection ?? null,
          certificate: cert ?? null,
        });
      }
      case '/clusters': {
        const clusters = [...(dataPlane.upstreams?.values() ?? [])].map((up) => {
          const ejection = new Map((up.outlier?.snapshot() ?? []).map((s) => [s.id, s]));
          return {
            service: up.service,
            loadBalancing: up.spec.loadBalancing.algorithm,
            mtls: up.spec.mtls,
            ...(up.breaker ? { circuitBreaker: up.breaker.status() } : {}),
            endpoints: up.describe().map((e) => {
              const o = ejection.get(e.id);
              return {
                ...e,
                ejected: o?.ejected ?? false,
                ...(o?.ejectedUntil ? { ejectedUntil: new Date(o.ejectedUntil).toISOString() } : {}),
                ...(o ? { consecutive5xx: o.consecutive5xx, timesEjected: o.timesEjected } : {}),
              };
            }),
          };
        });
        return json(res, 200, { clusters });
      }
      case '/metrics': {
        const text = await this.deps.metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.deps.metrics.registry.contentType });
        res.end(text);
        return;
      }
      default:
        return json(res, 404, { error: `no admin page ${path}; try /ready, /config_dump, /clusters, /metrics` });
    }
  }
}
