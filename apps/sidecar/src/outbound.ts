import { randomUUID } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import { createServer as createH2Server } from 'node:http2';
import { outcomeOfStatus, type RequestView } from '@novamesh/dataplane';
import type { Dispatcher } from 'undici';
import type { AccessLog } from './access-log';
import { type DownstreamRequest, type DownstreamResponse, forward, forwardableHeaders, forwardWithTrailers, hasBody } from './forward';
import { requestView, splitUrl } from './inbound';
import { sendLocalReply } from './local-reply';
import type { SidecarMetrics } from './metrics';
import { ProtocolListener } from './protocol-listener';
import type { UpstreamRuntime } from './upstream-runtime';

/** The domain apps address mesh services under: `http://orders.mesh/`. */
export const MESH_DOMAIN = '.mesh';

/**
 * The service a request is for: the host of an absolute-form request (the sidecar used as an HTTP
 * proxy) or of the Host header, without port and without the `.mesh` suffix.
 */
export function serviceOfRequest(req: DownstreamRequest): { service?: string; path: string } {
  let host: string | undefined;
  let path = req.url ?? '/';
  if (!path.startsWith('/')) {
    try {
      const url = new URL(path);
      host = url.hostname;
      path = `${url.pathname}${url.search}`;
    } catch {
      return { path };
    }
  } else host = req.headers.host ?? (req.headers[':authority'] as string | undefined);
  if (!host) return { path };
  let name = host.toLowerCase();
  const colon = name.lastIndexOf(':');
  if (colon > 0 && !name.endsWith(']')) name = name.slice(0, colon);
  if (name.endsWith(MESH_DOMAIN)) name = name.slice(0, -MESH_DOMAIN.length);
  return { service: name, path };
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
    },
  ) {}

  /** Listens on `port` (HTTP/1.1 and, for gRPC clients, HTTP/2 without TLS) for any mesh service, or (with `service`) for that one only. Returns the bound port. */
  async listen(port: number, host: string, service?: string): Promise<number> {
    const handler = (req: DownstreamRequest, res: DownstreamResponse) => void this.handle(req, res, service);
    const listener = new ProtocolListener({
      http1: createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, handler),
      h2c: createH2Server({}, handler),
    });
    this.listeners.push(listener);
    return listener.listen(port, host);
  }

  async close(graceMs: number): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.close(graceMs)));
  }

  private async handle(req: DownstreamRequest, res: DownstreamResponse, fixed: string | undefined): Promise<void> {
    const started = performance.now();
    const target = fixed ? { service: fixed, path: req.url ?? '/' } : serviceOfRequest(req);
    const { path, query } = splitUrl(target.path);
    const requestId = (req.headers['x-request-id'] as string | undefined) ?? randomUUID();
    const upstreamName = target.service ?? '';
    const log = (status: number, error?: string, reason?: string, extra?: Record<string, unknown>) => {
      const ms = performance.now() - started;
      this.deps.metrics.outbound(upstreamName, status, error, ms);
      this.deps.accessLog.write({
        direction: 'outbound',
        method: req.method,
        path,
        status,
        ms,
        upstream: upstreamName,
        error,
        reason,
        requestId,
        ...extra,
      });
    };
    const upstreams = this.deps.upstreams();
    if (!upstreams) {
      sendLocalReply(req, res, 'NO_SNAPSHOT', 'this sidecar has not received its configuration yet');
      return log(503, 'NO_SNAPSHOT');
    }
    if (!target.service) {
      const reason = 'no service named: call http://<service>.mesh/ (Host header or absolute URL)';
      sendLocalReply(req, res, 'BAD_REQUEST', reason);
      return log(400, 'BAD_REQUEST', reason);
    }
    const up = upstreams.get(target.service);
    if (!up) {
      const reason = `"${target.service}" is not a service this sidecar may call (known: ${[...upstreams.keys()].join(', ') || 'none'})`;
      sendLocalReply(req, res, 'NO_ROUTE', reason);
      return log(404, 'NO_ROUTE', reason);
    }
    const view = requestView(req, path, query);
    const route = up.routes.match(view);
    const subset = route?.pickSubset();
    const endpoint = up.pool.pick(view, subset);
    const routeName = route ? `${route.rule}/${route.name}` : undefined;
    if (!endpoint) {
      const reason = `no healthy endpoint of ${up.service}${subset ? ` in subset ${subset}` : ''}${up.outlier?.ejectedEndpoints ? ` (${up.outlier.ejectedEndpoints} ejected)` : ''}`;
      sendLocalReply(req, res, 'NO_HEALTHY_UPSTREAM', reason);
      return log(503, 'NO_HEALTHY_UPSTREAM', reason, { route: routeName });
    }
    const headers = forwardableHeaders(req.headers);
    headers['x-request-id'] = requestId;
    if (route?.requestHeaders) route.applyRequestHeaders(headers);
    const upstreamPath = route ? `${route.rewritePath(path)}${query ? `?${query}` : ''}` : target.path;
    const body = hasBody(req) ? req : null;
    if (route?.mirror && body === null && route.shouldMirror()) this.mirror(up, view, route.mirror.subset, upstreamPath, headers);

    const forwarded = {
      method: view.method,
      path: upstreamPath,
      headers,
      body,
      ...(route?.responseHeaders
        ? { onResponseHeaders: (h: Record<string, string | string[] | undefined>) => route.applyResponseHeaders(h) }
        : {}),
    };
    endpoint.active++;
    const outcome = endpoint.h2
      ? await endpoint.h2.forward(forwarded, res)
      : req.httpVersionMajor === 2
        ? await forwardWithTrailers(endpoint.dispatcher as Dispatcher, forwarded, res)
        : await forward(endpoint.dispatcher as Dispatcher, forwarded, res as ServerResponse);
    endpoint.active--;
    const extra = { endpoint: endpoint.id, route: routeName };
    if (outcome.error === 'DOWNSTREAM_DISCONNECT') return log(0, outcome.error, outcome.reason, extra);
    up.record(endpoint.id, outcome.error ? 'local-origin-failure' : outcomeOfStatus(outcome.status));
    if (outcome.error && outcome.status === 0) {
      sendLocalReply(req, res, outcome.error, `${outcome.reason} (endpoint ${endpoint.id} of ${up.service})`);
      return log(res.statusCode, outcome.error, outcome.reason, extra);
    }
    log(outcome.status, outcome.error, outcome.reason, extra);
  }

  /** Fire and forget: a copy of a bodiless request to the mirror subset; its response and failures are dropped. */
  private mirror(up: UpstreamRuntime, view: RequestView, subset: string, path: string, headers: Record<string, string | string[]>): void {
    const endpoint = up.pool.pick(view, subset);
    if (!endpoint?.dispatcher) return;
    const host = headers.host;
    endpoint.dispatcher
      .request({
        method: view.method as 'GET',
        path,
        // Envoy marks shadowed requests by suffixing the authority with "-shadow".
        headers: { ...headers, ...(typeof host === 'string' ? { host: `${host}-shadow` } : {}), 'x-novamesh-mirror': '1' },
      })
      .then((r) => r.body.dump())
      .catch(() => undefined);
  }
}
