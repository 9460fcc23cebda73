import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The sidecar's Prometheus metrics, served on the admin port's `/metrics`. Label sets are small and
 * bounded: direction, upstream service, status code and the local-reply code.
 */
export class SidecarMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'novamesh_sidecar_requests_total',
    help: 'Requests handled, by direction, upstream service, status and the code of a response the sidecar made itself',
    labelNames: ['direction', 'upstream', 'status', 'error'] as const,
    registers: [this.registry],
  });
  private readonly duration = new Histogram({
    name: 'novamesh_sidecar_request_duration_seconds',
    help: 'Time from request received to response complete, as the sidecar saw it',
    labelNames: ['direction', 'upstream'] as const,
    buckets: BUCKETS,
    registers: [this.registry],
  });
  readonly snapshotVersion = new Gauge({
    name: 'novamesh_sidecar_snapshot_version',
    help: 'Version of the proxy snapshot in use (0: none yet)',
    registers: [this.registry],
  });
  readonly snapshotRejections = new Counter({
    name: 'novamesh_sidecar_snapshot_rejections_total',
    help: 'Snapshots refused (invalid or not applicable); the previous one stays in use',
    registers: [this.registry],
  });
  readonly ejections = new Counter({
    name: 'novamesh_sidecar_outlier_ejections_total',
    help: 'Endpoints ejected by passive outlier detection',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'novamesh_sidecar_retries_total',
    help: 'Retries sent to an upstream (each retried attempt counts once)',
    labelNames: ['upstream'] as const,
    registers: [this.registry],
  });
  readonly overflows = new Counter({
    name: 'novamesh_sidecar_upstream_overflow_total',
    help: 'Requests a circuit breaker limit refused (maxRequests, maxPendingRequests), requests that waited for maxConnections, and retries maxRetries or the retry budget refused',
    labelNames: ['upstream', 'limit'] as const,
    registers: [this.registry],
  });
  readonly faults = new Counter({
    name: 'novamesh_sidecar_faults_injected_total',
    help: 'Faults injected by routes (abort or delay)',
    labelNames: ['upstream', 'kind'] as const,
    registers: [this.registry],
  });
  private readonly rateLimitedRequests = new Counter({
    name: 'novamesh_sidecar_rate_limited_total',
    help: 'Inbound requests a RateLimitPolicy limit refused (RATE_LIMITED), by policy and limit',
    labelNames: ['policy', 'limit'] as const,
    registers: [this.registry],
  });
  readonly rateLimitStoreErrors = new Counter({
    name: 'novamesh_sidecar_rate_limit_store_errors_total',
    help: 'Global rate-limit decisions made without Redis (unreachable or too slow): the failureMode decided',
    registers: [this.registry],
  });
  readonly fastPathRequests = new Counter({
    name: 'novamesh_sidecar_fast_path_requests_total',
    help: 'Outbound HTTP/1.1 requests the fast path handled itself (they count in novamesh_sidecar_requests_total as well)',
    registers: [this.registry],
  });
  readonly fastPathHandoffs = new Counter({
    name: 'novamesh_sidecar_fast_path_handoffs_total',
    help: 'Outbound connections the fast path handed to node:http, by what made the request not eligible',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly inboundFastPathRequests = new Counter({
    name: 'novamesh_sidecar_inbound_fast_path_requests_total',
    help: 'Inbound HTTP/1.1 requests the fast path handled itself (they count in novamesh_sidecar_requests_total as well)',
    registers: [this.registry],
  });
  readonly inboundFastPathHandoffs = new Counter({
    name: 'novamesh_sidecar_inbound_fast_path_handoffs_total',
    help: 'Inbound connections the fast path handed to node:http, by what made the request not eligible',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly listenerFiltersTimeouts = new Counter({
    name: 'novamesh_sidecar_listener_filters_timeouts_total',
    help: "Connections closed because their first bytes did not show what they speak, or (inbound) their TLS handshake did not complete, within SIDECAR_LISTENER_FILTERS_TIMEOUT (Envoy's downstream_pre_cx_timeout)",
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly peerRefusals = new Counter({
    name: 'novamesh_sidecar_inbound_refused_connections_total',
    help: 'Inbound connections refused before any request (bad or revoked certificate, TLS while disabled)',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'novamesh_sidecar_' });
  }

  // Label children cached by a plain string key: prom-client hashes (and sorts) the label object
  // on every inc/observe otherwise, which showed up in the sidecar's per-request profile.
  private readonly counterChildren = new Map<string, { inc(): void }>();
  private readonly histogramChildren = new Map<string, { observe(v: number): void }>();

  private record(direction: 'inbound' | 'outbound', upstream: string, status: number, error: string | undefined, ms: number): void {
    const key = `${direction} ${upstream} ${status} ${error ?? ''}`;
    let counter = this.counterChildren.get(key);
    if (!counter) {
      counter = this.requests.labels(direction, upstream, String(status), error ?? '');
      this.counterChildren.set(key, counter);
    }
    counter.inc();
    const hkey = `${direction} ${upstream}`;
    let histogram = this.histogramChildren.get(hkey);
    if (!histogram) {
      histogram = this.duration.labels(direction, upstream);
      this.histogramChildren.set(hkey, histogram);
    }
    histogram.observe(ms / 1000);
  }

  rateLimited(policy: string, limit: string): void {
    this.rateLimitedRequests.labels(policy, limit).inc();
  }

  inbound(status: number, error: string | undefined, ms: number): void {
    this.record('inbound', '', status, error, ms);
  }

  outbound(upstream: string, status: number, error: string | undefined, ms: number): void {
    this.record('outbound', upstream, status, error, ms);
  }
}
