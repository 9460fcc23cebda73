import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { Inject, Injectable } from '@nestjs/common';
import { followKv, publishJsonNoAck } from '@novamesh/bus';
import { ErrorCode, MeshError, subjects } from '@novamesh/contracts';
import {
  type Applied,
  activeEndpointIds,
  computeEndpointSet,
  type HealthView,
  isLive,
  type ServiceRecord,
  toEndpointSetEvent,
} from '@novamesh/discovery';
import type { Logger } from '@novamesh/observability';
import type { HealthStore } from '@novamesh/state';
import { EndpointsViewService, endpointSetMsgId } from './endpoints-view.service';
import { HEALTH_STORE, LOGGER, NATS, SERVICES_KV } from './tokens';

interface Cached {
  record: ServiceRecord;
  revision: number;
}

const WRONG_LAST_SEQUENCE = 10071;
const MAX_CAS_ATTEMPTS = 25;

function isCasConflict(e: unknown): boolean {
  const err = e as { code?: unknown; message?: string };
  return err?.code === WRONG_LAST_SEQUENCE || /wrong last sequence/i.test(err?.message ?? '');
}

/**
 * Owns the `mesh_services` KV bucket. Every change goes through `mutate`: apply the event to
 * the freshest record, compute the endpoint set with health, compare-and-set the record, and
 * publish the set when its hash changed (the sweeper republishes any publication that got lost). Concurrent replicas serialise on the KV revision, so
 * each change is written once and published once. Safe to call concurrently.
 */
@Injectable()
export class RegistryService {
  private readonly cache = new Map<string, Cached>();
  private readonly checked = new Set<string>();
  private readonly lastHealth = new Map<string, HealthView>();
  private readonly log: Logger;
  private watching = false;
  private stopWatch: (() => void) | undefined;

  constructor(
    @Inject(SERVICES_KV) private readonly kv: KV,
    @Inject(NATS) private readonly nc: NatsConnection,
    @Inject(HEALTH_STORE) private readonly health: HealthStore,
    private readonly view: EndpointsViewService,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'registry' });
  }

  /** Loads the bucket and keeps the in-memory view current; resolves once the initial load is done. */
  async start(): Promise<void> {
    const watch = await followKv(
      this.kv,
      (e) => {
        const known = this.cache.get(e.key);
        // Our own writes come back through the watch: skip parsing what we already hold.
        if (e.operation === 'PUT' && !(known && known.revision >= e.revision)) this.remember(e.key, e.json<ServiceRecord>(), e.revision);
        else if (e.operation !== 'PUT') this.forget(e.key);
      },
      { logger: this.log },
    );
    this.stopWatch = watch.stop;
    this.watching = true;
    this.log.info({ services: this.cache.size }, 'registry loaded');
  }

  stop(): void {
    this.watching = false;
    this.stopWatch?.();
  }

  private remember(name: string, record: ServiceRecord, revision: number): void {
    const cur = this.cache.get(name);
    if (cur && cur.revision >= revision) return;
    this.cache.set(name, { record, revision });
    if (record.spec.healthCheck && isLive(record)) this.checked.add(name);
    else this.checked.delete(name);
  }

  private forget(name: string): void {
    this.cache.delete(name);
    this.checked.delete(name);
  }

  /** Live services with active health checks (the health checker's work list). */
  checkedServices(): Iterable<string> {
    return this.checked;
  }

  get(name: string): ServiceRecord | undefined {
    return this.cache.get(name)?.record;
  }

  /** Names of every registered (not deregistered) service. */
  liveNames(): string[] {
    return [...this.cache.entries()].filter(([, c]) => isLive(c.record)).map(([n]) => n);
  }

  entries(): IterableIterator<[string, Cached]> {
    return this.cache.entries();
  }

  private async load(name: string): Promise<Cached | undefined> {
    const e = await this.kv.get(name);
    if (e === null || e.operation !== 'PUT') return undefined; // missing, or deleted by an operator
    const c = { record: e.json<ServiceRecord>(), revision: e.revision };
    this.remember(name, c.record, c.revision);
    return c;
  }

  /**
   * Health of a record's endpoints from Redis. When Redis is unreachable the last view read is
   * used instead, so an outage never flips endpoints to unhealthy.
   */
  async healthView(name: string, record: ServiceRecord, now: number): Promise<HealthView> {
    const needsHb = record.spec.heartbeat !== undefined;
    const needsChecks = record.spec.healthCheck !== undefined;
    if (!needsHb && !needsChecks) return {};
    try {
      const view: HealthView = {};
      if (needsHb) view.heartbeats = await this.health.heartbeats(name, activeEndpointIds(record), now);
      if (needsChecks) view.checks = await this.health.checks(name);
      this.lastHealth.set(name, view);
      return view;
    } catch (err) {
      this.log.debug({ err, meshService: name }, 'health store unavailable; using last known health');
      return this.lastHealth.get(name) ?? {};
    }
  }

  /**
   * Applies `fn` to the current record and persists + publishes the result. `fn` may run more
   * than once (on a compare-and-set conflict it sees the newer record) and must be pure.
   */
  async mutate(name: string, fn: (current: ServiceRecord | undefined) => Applied, opts: { forcePublish?: boolean } = {}): Promise<void> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const cur = attempt === 0 && this.watching ? this.cache.get(name) : await this.load(name);
      const now = Date.now();
      const applied = fn(cur?.record);
      const next = applied.kind === 'changed' ? applied.record : cur?.record;
      if (!next) return;
      const set = computeEndpointSet(next, await this.healthView(name, next, now), now);
      const publish = opts.forcePublish || set.hash !== next.published?.hash;
      if (applied.kind === 'unchanged' && !publish) return;
      const toStore: ServiceRecord = publish ? { ...next, published: { hash: set.hash } } : next;
      let revision: number;
      try {
        revision = cur
          ? await this.kv.update(name, JSON.stringify(toStore), cur.revision)
          : await this.kv.create(name, JSON.stringify(toStore));
      } catch (e) {
        if (isCasConflict(e) || /exists/i.test((e as Error).message ?? '')) {
          await new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)));
          continue;
        }
        throw new MeshError(ErrorCode.unavailable, `registry store unavailable: ${(e as Error).message}`, { cause: e, retryable: true });
      }
      this.remember(name, toStore, revision);
      if (publish) {
        const event = toEndpointSetEvent(name, toStore, set, revision, now);
        // Core publish into the stream: no ack round trip on the hot path. A lost publish is
        // repaired by the sweeper's reconcile, which compares the stream with the registry.
        const msgId = endpointSetMsgId(name, revision);
        this.view.expect(msgId, event);
        publishJsonNoAck(this.nc, subjects.endpoints(name), event, { msgId });
        this.log.debug({ meshService: name, revision, endpoints: set.endpoints.length }, 'endpoint set published');
      }
      return;
    }
    throw new MeshError(ErrorCode.conflict, `service "${name}" is changing too fast to update; will retry`, { retryable: true });
  }

  /** Re-evaluates health and publishes when the set changed. */
  refresh(name: string): Promise<void> {
    return this.mutate(name, () => ({ kind: 'unchanged', why: 'no-op' }));
  }
}
