import { ErrorCode, MeshError, type Service, type ServiceEndpoint } from '@novamesh/contracts';

/** One endpoint as discovery remembers it, with the stream sequence of the event that last touched it. */
export interface EndpointEntry {
  endpoint: ServiceEndpoint;
  seq: number;
  /** Draining until this time (epoch ms); removed after. */
  drainUntil?: number;
  /** Tombstone: removed at this time; kept a while so a late, older event cannot resurrect it. */
  removedAt?: number;
}

export type ServiceSpec = Omit<Service, 'endpoints'>;

/**
 * The registry's record of one service, stored as the value of its key in the `mesh_services`
 * KV bucket. Updates are compare-and-set on the KV revision, and every event carries its
 * registry stream sequence, so applying events is idempotent and order-independent: a
 * redelivered or late event never undoes a newer one.
 */
export interface ServiceRecord {
  spec: ServiceSpec;
  endpoints: Record<string, EndpointEntry>;
  /** Sequence of the last register/deregister applied. */
  registerSeq: number;
  registeredAt: number;
  /** Set while the whole service drains after a deregister. */
  drainUntil?: number;
  /** Tombstone of a deregistered service. */
  deregisteredAt?: number;
  /** Hash of the endpoint set last published for it. */
  published?: { hash: string };
}

const TOMBSTONE_KEEP_MS = 10 * 60_000;

export const isActive = (e: EndpointEntry): boolean => e.removedAt === undefined;
export const isLive = (r: ServiceRecord | undefined): r is ServiceRecord => r !== undefined && r.deregisteredAt === undefined;

/** Result of applying an event: the new record, or why nothing changes. */
export type Applied = { kind: 'changed'; record: ServiceRecord } | { kind: 'unchanged'; why: 'stale' | 'no-op' };

const unchanged = (why: 'stale' | 'no-op'): Applied => ({ kind: 'unchanged', why });
const changed = (record: ServiceRecord): Applied => ({ kind: 'changed', record });

function clone(r: ServiceRecord): ServiceRecord {
  return structuredClone(r);
}

/** Register or replace: endpoints missing from the new definition are removed at once. */
export function applyRegister(current: ServiceRecord | undefined, service: Service, seq: number, now: number): Applied {
  if (current && seq <= current.registerSeq) return unchanged('stale');
  const { endpoints, ...spec } = service;
  const next: ServiceRecord = current ? clone(current) : { spec, endpoints: {}, registerSeq: seq, registeredAt: now };
  next.spec = spec;
  next.registerSeq = seq;
  if (current?.deregisteredAt !== undefined || current?.drainUntil !== undefined) next.registeredAt = now;
  delete next.drainUntil;
  delete next.deregisteredAt;
  const wanted = new Map(endpoints.map((e) => [e.id, e]));
  for (const [id, entry] of Object.entries(next.endpoints)) {
    if (entry.seq > seq) continue; // a later add/remove already decided this endpoint
    if (!wanted.has(id) && isActive(entry)) next.endpoints[id] = { ...entry, seq, removedAt: now, drainUntil: undefined };
  }
  for (const [id, endpoint] of wanted) {
    const existing = next.endpoints[id];
    if (existing && existing.seq > seq) continue;
    next.endpoints[id] = { endpoint, seq };
  }
  return changed(next);
}

/** Deregister: drain every endpoint for `drainMs`, or remove the service at once when 0. */
export function applyDeregister(current: ServiceRecord | undefined, drainMs: number, seq: number, now: number): Applied {
  if (!isLive(current)) return unchanged('no-op');
  if (seq <= current.registerSeq) return unchanged('stale');
  const next = clone(current);
  next.registerSeq = seq;
  if (drainMs <= 0) return changed(finalizeDeregister(next, now));
  const until = now + drainMs;
  next.drainUntil = Math.min(next.drainUntil ?? until, until);
  for (const e of Object.values(next.endpoints)) if (isActive(e)) e.drainUntil = Math.min(e.drainUntil ?? until, until);
  return changed(next);
}

function finalizeDeregister(r: ServiceRecord, now: number): ServiceRecord {
  r.deregisteredAt = now;
  delete r.drainUntil;
  for (const e of Object.values(r.endpoints)) {
    if (isActive(e)) {
      e.removedAt = now;
      delete e.drainUntil;
    }
  }
  return r;
}

/** Adds or replaces one endpoint. The service must be registered (retryable: its register may still be in flight). */
export function applyEndpointAdd(current: ServiceRecord | undefined, service: string, endpoint: ServiceEndpoint, seq: number): Applied {
  if (!isLive(current))
    throw new MeshError(ErrorCode.notFound, `endpoint "${endpoint.id}" cannot be added: service "${service}" is not registered`, {
      retryable: true,
      issues: [{ path: 'service', message: 'is not registered' }],
    });
  const existing = current.endpoints[endpoint.id];
  if (existing && existing.seq >= seq) return unchanged('stale');
  const next = clone(current);
  next.endpoints[endpoint.id] = { endpoint, seq, ...(next.drainUntil ? { drainUntil: next.drainUntil } : {}) };
  return changed(next);
}

/** Drains one endpoint for `drainMs` (or removes it at once); removing an unknown endpoint only records a tombstone. */
export function applyEndpointRemove(current: ServiceRecord | undefined, id: string, drainMs: number, seq: number, now: number): Applied {
  if (!isLive(current)) return unchanged('no-op');
  const existing = current.endpoints[id];
  if (existing && existing.seq >= seq) return unchanged('stale');
  const next = clone(current);
  if (!existing || !isActive(existing)) {
    // Leave a tombstone: an add published before this remove may still be in flight.
    const endpoint = existing?.endpoint ?? { id, address: '0.0.0.0', port: 1, weight: 0, healthy: false, labels: {} };
    next.endpoints[id] = { endpoint, seq, removedAt: existing?.removedAt ?? now };
    return changed(next);
  }
  const entry = next.endpoints[id] as EndpointEntry;
  entry.seq = seq;
  if (drainMs <= 0) {
    entry.removedAt = now;
    delete entry.drainUntil;
  } else entry.drainUntil = Math.min(entry.drainUntil ?? now + drainMs, now + drainMs);
  return changed(next);
}

/**
 * Time-driven changes: finished drains become removals, endpoints silent past
 * `heartbeat.deregisterAfter` are removed, old tombstones are pruned.
 */
export function applySweep(current: ServiceRecord, now: number, lastHeartbeat?: Map<string, number>): Applied {
  const next = clone(current);
  let dirty = false;
  if (isLive(next) && next.drainUntil !== undefined && next.drainUntil <= now) {
    finalizeDeregister(next, now);
    dirty = true;
  }
  const hb = next.spec.heartbeat;
  const deregisterAfter = hb ? (hb.deregisterAfter ?? hb.ttl * 10) : undefined;
  for (const [id, e] of Object.entries(next.endpoints)) {
    if (isActive(e)) {
      if (e.drainUntil !== undefined && e.drainUntil <= now) {
        e.removedAt = now;
        delete e.drainUntil;
        dirty = true;
      } else if (deregisterAfter !== undefined && lastHeartbeat) {
        const last = lastHeartbeat.get(id);
        if (last !== undefined && now - last > deregisterAfter) {
          e.removedAt = now;
          dirty = true;
        }
      }
    } else if (e.removedAt !== undefined && now - e.removedAt > TOMBSTONE_KEEP_MS) {
      delete next.endpoints[id];
      dirty = true;
    }
  }
  return dirty ? changed(next) : unchanged('no-op');
}

/** Ids of endpoints currently in the set (not removed). */
export function activeEndpointIds(r: ServiceRecord): string[] {
  return Object.entries(r.endpoints)
    .filter(([, e]) => isActive(e))
    .map(([id]) => id);
}
