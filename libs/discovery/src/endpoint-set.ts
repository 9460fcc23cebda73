import { createHash } from 'node:crypto';
import type { EndpointSetV1, EndpointStateV1 } from '@novamesh/contracts';
import { isActive, type ServiceRecord } from './service-record';

/** Active health-check verdict of an endpoint, as read from the health store. */
export interface CheckVerdict {
  status: 'unknown' | 'healthy' | 'unhealthy';
  detail?: string;
}

export interface HealthView {
  /** Last heartbeat per endpoint (only for services with `heartbeat`). */
  heartbeats?: Map<string, number>;
  checks?: Map<string, CheckVerdict>;
}

export interface ComputedSet {
  endpoints: EndpointStateV1[];
  deregistered: boolean;
  /** Content hash: equal sets (whatever their revision) hash equal. */
  hash: string;
}

/**
 * The endpoint set users see: every active endpoint with one status. Draining wins, then an
 * endpoint declared unhealthy by its owner, then an expired heartbeat, then a failing check;
 * endpoints never checked yet count as healthy.
 */
export function computeEndpointSet(record: ServiceRecord, health: HealthView, now: number): ComputedSet {
  const deregistered = record.deregisteredAt !== undefined;
  const ttl = record.spec.heartbeat?.ttl;
  const endpoints: EndpointStateV1[] = [];
  if (!deregistered) {
    for (const [id, entry] of Object.entries(record.endpoints)) {
      if (!isActive(entry)) continue;
      const ep = entry.endpoint;
      let status: EndpointStateV1['status'] = 'healthy';
      let reason: string | undefined;
      const last = health.heartbeats?.get(id);
      const check = health.checks?.get(id);
      if (entry.drainUntil !== undefined || record.drainUntil !== undefined) {
        status = 'draining';
        reason = 'draining';
      } else if (!ep.healthy) {
        status = 'unhealthy';
        reason = 'declared-unhealthy';
      } else if (ttl !== undefined && last !== undefined && now - last > ttl) {
        status = 'unhealthy';
        reason = 'heartbeat-expired';
      } else if (check?.status === 'unhealthy') {
        status = 'unhealthy';
        reason = `check-failed: ${check.detail ?? 'unknown'}`;
      }
      endpoints.push({
        id,
        address: ep.address,
        port: ep.port,
        weight: ep.weight,
        labels: ep.labels,
        status,
        ...(reason ? { reason } : {}),
      });
    }
    endpoints.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }
  const { spec } = record;
  return { endpoints, deregistered, hash: hashEndpointSet({ ...spec, deregistered, endpoints }) };
}

/** Content hash of an endpoint set; equal for a computed set and the event published from it. */
export function hashEndpointSet(
  set: Pick<EndpointSetV1, 'type' | 'port' | 'virtualIP' | 'deregistered' | 'endpoints' | 'upstreams'>,
): string {
  const endpoints = set.endpoints.map((e) => ({
    id: e.id,
    address: e.address,
    port: e.port,
    weight: e.weight,
    labels: e.labels,
    status: e.status,
    ...(e.reason ? { reason: e.reason } : {}),
  }));
  return createHash('sha256')
    .update(JSON.stringify([set.type, set.port, set.virtualIP ?? null, set.deregistered, endpoints, set.upstreams ?? null]))
    .digest('base64url')
    .slice(0, 22);
}

/** The public event for a computed set. */
export function toEndpointSetEvent(name: string, record: ServiceRecord, set: ComputedSet, revision: number, now: number): EndpointSetV1 {
  return {
    service: name,
    revision,
    type: record.spec.type,
    port: record.spec.port,
    ...(record.spec.virtualIP ? { virtualIP: record.spec.virtualIP } : {}),
    endpoints: set.endpoints,
    ...(record.spec.upstreams ? { upstreams: record.spec.upstreams } : {}),
    deregistered: set.deregistered,
    updatedAt: new Date(now).toISOString(),
  };
}

/** True when every selector label is present with the same value. */
export function matchesLabels(labels: Record<string, string>, selector: Record<string, string> | undefined): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}
