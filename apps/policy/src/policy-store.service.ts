import type { KV } from '@nats-io/kv';
import { Inject, Injectable } from '@nestjs/common';
import { followKv } from '@novamesh/bus';
import {
  ErrorCode,
  type Issue,
  MeshError,
  MeshValidationError,
  type Policy,
  type PolicyApplyResultV1,
  type PolicyKind,
  type StoredPolicy,
} from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import {
  analyze,
  computeEffective,
  crossCheck,
  diffPolicies,
  type Finding,
  parsePolicyKey,
  policyKey,
  policyTargets,
  rivalsOf,
  validatePolicy,
} from '@novamesh/policy';
import { EffectivePublisherService } from './effective-publisher.service';
import { ServicesViewService } from './services-view.service';
import { LOGGER, POLICIES_KV } from './tokens';

const WRONG_LAST_SEQUENCE = 10071;
const MAX_CAS_ATTEMPTS = 10;

function isCasConflict(e: unknown): boolean {
  const err = e as { code?: unknown; message?: string };
  return err?.code === WRONG_LAST_SEQUENCE || /wrong last sequence|key exists/i.test(err?.message ?? '');
}

export interface HistoryEntry {
  revision: number;
  operation: 'PUT' | 'DEL' | 'PURGE';
  updatedAt: string;
  policy?: Policy;
}

/**
 * Owns the `mesh_policies` bucket (key `<kind>.<name>`, the last 20 revisions kept). Applies are
 * validated in full, written with compare-and-set on the key's revision (an apply carrying an
 * expected revision fails on conflict; one without retries against the newer value and its diff
 * says what it replaced). Every replica watches the bucket and refreshes the effective policy of
 * each service a change touches.
 */
@Injectable()
export class PolicyStoreService {
  private readonly cache = new Map<string, StoredPolicy>();
  private stopWatch: (() => void) | undefined;
  private lastRevision = 0;
  private readonly log: Logger;

  constructor(
    @Inject(POLICIES_KV) private readonly kv: KV,
    private readonly publisher: EffectivePublisherService,
    private readonly services: ServicesViewService,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'policy-store' });
  }

  async start(): Promise<void> {
    const watch = await followKv(
      this.kv,
      async (e, initial) => {
        const before = this.cache.get(e.key);
        this.lastRevision = Math.max(this.lastRevision, e.revision);
        if (e.operation === 'PUT') {
          try {
            this.cache.set(e.key, { policy: e.json<Policy>(), revision: e.revision, updatedAt: e.created.toISOString() });
          } catch (err) {
            this.log.error({ err, key: e.key }, 'unreadable policy in the bucket ignored');
          }
        } else this.cache.delete(e.key);
        // Changes after the initial load refresh the effective policies they touch.
        if (!initial) await this.refreshFor([before?.policy, this.cache.get(e.key)?.policy], e.revision);
      },
      { logger: this.log },
    );
    this.stopWatch = watch.stop;
    // Every known service gets its effective policy (also those with no policy: the defaults) —
    // again when MESH_CONFIG was created anew.
    await this.refreshAll();
    this.publisher.onReset(() => void this.refreshAll());
    // Something unreadable was stored over a service's effective policy: published again (if the service is one this store knows).
    this.publisher.onUnreadable((service, seq) => {
      const known =
        this.services.names().includes(service) || [...this.cache.values()].some(({ policy }) => policyTargets(policy).includes(service));
      if (known) void this.refreshServices([service], this.lastRevision, seq);
    });
    this.services.onNewService((service) => void this.refreshServices([service], this.lastRevision));
    this.log.info({ policies: this.cache.size }, 'policies loaded');
  }

  stop(): void {
    this.stopWatch?.();
  }

  private stored(): { policy: Policy; revision: number }[] {
    return [...this.cache.values()];
  }

  private async refreshFor(policies: (Policy | undefined)[], revision: number): Promise<void> {
    const targets = new Set<string>();
    for (const p of policies) if (p) for (const t of policyTargets(p)) targets.add(t);
    if (targets.has('*')) return this.refreshAll(revision);
    await this.refreshServices([...targets], revision);
  }

  private async refreshAll(revision = this.lastRevision): Promise<void> {
    const all = new Set(this.services.names());
    for (const { policy } of this.cache.values()) for (const t of policyTargets(policy)) if (t !== '*') all.add(t);
    await this.refreshServices([...all], revision);
  }

  private async refreshServices(services: string[], revision: number, over?: number): Promise<void> {
    const stored = this.stored();
    for (const s of services) {
      try {
        await this.publisher.refresh(s, stored, revision, over);
      } catch (err) {
        this.log.warn({ err, meshService: s }, 'effective policy not published; will retry on the next change');
      }
    }
  }

  /** Validates and stores a policy (or, with dryRun, only says what would change). */
  async apply(input: unknown, opts: { dryRun: boolean; expectedRevision?: number }): Promise<PolicyApplyResultV1> {
    const v = validatePolicy(input);
    if (!v.ok) {
      const what = describe(input);
      throw new MeshValidationError(`invalid ${what}`, v.issues);
    }
    const policy = v.policy;
    const key = policyKey(policy);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const current = await this.kv.get(key);
      const currentRevision = current?.operation === 'PUT' ? current.revision : 0;
      const before = current?.operation === 'PUT' ? current.json<Policy>() : undefined;
      if (opts.expectedRevision !== undefined && opts.expectedRevision !== currentRevision)
        throw new MeshError(
          ErrorCode.conflict,
          `${policy.kind} "${policy.name}" is at revision ${currentRevision}, not ${opts.expectedRevision}: someone changed it; review and apply again`,
          { issues: [{ path: 'expectedRevision', message: `current revision is ${currentRevision}` }] },
        );
      const others = this.stored().filter((s) => policyKey(s.policy) !== key);
      // One TrafficPolicy per service: a second one would silently take the first one's place. Checked
      // when a TrafficPolicy comes to configure a service (created, or moved to it by an update or a
      // rollback); one that keeps its service may still be changed (two stored before this rule).
      const otherPolicies = others.map((o) => o.policy);
      const comesToService = currentRevision === 0 || (before as { serviceName?: string } | undefined)?.serviceName !== policy.serviceName;
      const checksRivals = policy.kind === 'TrafficPolicy' && comesToService;
      const rival = checksRivals ? rivalsOf(policy, otherPolicies)[0]?.name : undefined;
      if (rival) throw rivalConflict(rival, policy.serviceName);
      const warnings: Issue[] = [
        ...v.warnings,
        ...crossCheck(policy, { endpointLabels: (s) => this.services.endpointLabels(s), policies: otherPolicies }),
      ];
      const diff = diffPolicies(before, policy);
      const base = { ok: true as const, kind: policy.kind, name: policy.name, warnings, diff, created: currentRevision === 0 };
      if (opts.dryRun) {
        const target = policyTargets(policy).find((t) => t !== '*') ?? this.services.names()[0];
        const effective = target
          ? {
              ...computeEffective(target, [...others, { policy, revision: currentRevision + 1 }]),
              revision: 0,
              updatedAt: new Date().toISOString(),
            }
          : undefined;
        return { ...base, revision: 0, unchanged: diff === '', dryRun: true, ...(effective ? { effective } : {}) };
      }
      if (diff === '') return { ...base, revision: currentRevision, unchanged: true, dryRun: false };
      try {
        const body = JSON.stringify(policy);
        const revision = currentRevision === 0 ? await this.kv.create(key, body) : await this.kv.update(key, body, currentRevision);
        if (checksRivals) await this.settleRace(policy, key, revision, before);
        this.log.info({ key, revision, created: currentRevision === 0 }, 'policy applied');
        return { ...base, revision, unchanged: false, dryRun: false };
      } catch (e) {
        if (e instanceof MeshError) throw e; // lost a race (settleRace): refused as such
        if (isCasConflict(e) && opts.expectedRevision === undefined) continue; // re-read; the diff will show what we replace
        if (isCasConflict(e))
          throw new MeshError(ErrorCode.conflict, `${policy.kind} "${policy.name}" changed while applying: review and apply again`, {
            cause: e,
          });
        throw new MeshError(ErrorCode.unavailable, `policy store unavailable: ${(e as Error).message}`, { cause: e, retryable: true });
      }
    }
    throw new MeshError(ErrorCode.conflict, `${policy.kind} "${policy.name}" is changing too fast to apply; try again`);
  }

  /**
   * Two applies racing (two replicas, or one whose view had not caught up) can each find no rival
   * and store a TrafficPolicy for the same service. After storing one, the bucket itself is read:
   * of the TrafficPolicies for the service, the one stored first (the lower revision: the bucket's
   * stream orders every write) stays, and a later one undoes its own write (compare-and-set on its
   * revision: back to what it was, or deleted) and is refused, as it would have been without the
   * race. Each racer checks after its own write, so whichever comes second sees the first.
   */
  private async settleRace(policy: Policy, key: string, revision: number, before: Policy | undefined): Promise<void> {
    const service = (policy as { serviceName: string }).serviceName;
    // The first stored of those before ours: the one that stays (others before ours undo themselves too).
    let first: { name: string; revision: number } | undefined;
    for await (const other of await this.kv.keys('TrafficPolicy.>')) {
      if (other === key) continue;
      const e = await this.kv.get(other);
      if (e?.operation !== 'PUT' || e.revision > revision || (first && e.revision > first.revision)) continue;
      const p = e.json<Policy>();
      if ((p as { serviceName?: string }).serviceName === service) first = { name: p.name, revision: e.revision };
    }
    if (!first) return;
    const winner = first.name;
    try {
      if (before) await this.kv.update(key, JSON.stringify(before), revision);
      else await this.kv.delete(key, { previousSeq: revision });
      this.log.warn({ key, service, winner }, 'TrafficPolicy lost a race with a concurrent apply for the same service: undone');
    } catch (e) {
      // Changed again meanwhile: left to whoever changed it (analyze reports two TrafficPolicies).
      this.log.warn({ err: e, key, service, winner }, 'TrafficPolicy lost a race but could not be undone');
    }
    throw rivalConflict(winner, service);
  }

  async delete(kind: PolicyKind, name: string, expectedRevision?: number): Promise<{ revision: number }> {
    const key = policyKey({ kind, name });
    const current = await this.kv.get(key);
    if (current?.operation !== 'PUT') throw notFound(kind, name);
    if (expectedRevision !== undefined && expectedRevision !== current.revision)
      throw new MeshError(ErrorCode.conflict, `${kind} "${name}" is at revision ${current.revision}, not ${expectedRevision}`, {
        issues: [{ path: 'expectedRevision', message: `current revision is ${current.revision}` }],
      });
    try {
      await this.kv.delete(key, { previousSeq: current.revision });
    } catch (e) {
      if (isCasConflict(e))
        throw new MeshError(ErrorCode.conflict, `${kind} "${name}" changed while deleting: review and try again`, { cause: e });
      throw e;
    }
    this.log.info({ key }, 'policy deleted');
    return { revision: current.revision };
  }

  async get(kind: PolicyKind, name: string): Promise<StoredPolicy> {
    const e = await this.kv.get(policyKey({ kind, name }));
    if (e?.operation !== 'PUT') throw notFound(kind, name);
    return { policy: e.json<Policy>(), revision: e.revision, updatedAt: e.created.toISOString() };
  }

  list(filter: { kind?: PolicyKind; serviceName?: string }): StoredPolicy[] {
    return [...this.cache.values()]
      .filter(
        (s) =>
          (!filter.kind || s.policy.kind === filter.kind) && (!filter.serviceName || policyTargets(s.policy).includes(filter.serviceName)),
      )
      .sort((a, b) => policyKey(a.policy).localeCompare(policyKey(b.policy)));
  }

  async history(kind: PolicyKind, name: string): Promise<HistoryEntry[]> {
    const out: HistoryEntry[] = [];
    const it = await this.kv.history({ key: policyKey({ kind, name }) });
    for await (const e of it) {
      out.push({
        revision: e.revision,
        operation: e.operation,
        updatedAt: e.created.toISOString(),
        ...(e.operation === 'PUT' ? { policy: e.json<Policy>() } : {}),
      });
    }
    if (out.length === 0) throw notFound(kind, name);
    return out.sort((a, b) => a.revision - b.revision);
  }

  /** Re-applies the policy as it was at `toRevision` (validated again; a new revision). */
  async rollback(kind: PolicyKind, name: string, toRevision: number): Promise<PolicyApplyResultV1> {
    const entries = await this.history(kind, name);
    const target = entries.find((e) => e.revision === toRevision);
    if (!target?.policy) {
      const known = `known revisions: ${entries
        .filter((e) => e.policy)
        .map((e) => e.revision)
        .join(', ')}`;
      // What there is instead goes in the message too: a not-found is shown without its issues.
      throw new MeshError(ErrorCode.notFound, `${kind} "${name}" has no stored revision ${toRevision} (${known})`, {
        issues: [{ path: 'toRevision', message: known }],
      });
    }
    return this.apply(target.policy, { dryRun: false });
  }

  analyze(): Finding[] {
    const services = this.services.names().map((name) => ({ name, endpointLabels: this.services.endpointLabels(name) ?? [] }));
    return analyze(
      this.stored().map((s) => s.policy),
      services,
    );
  }

  keys(): { kind: PolicyKind; name: string }[] {
    return [...this.cache.keys()].map((k) => parsePolicyKey(k)).filter((k) => k !== undefined);
  }
}

/** A second TrafficPolicy for a service: refused, naming the one in place. */
function rivalConflict(rival: string, service: string): MeshError {
  return new MeshError(
    ErrorCode.conflict,
    `TrafficPolicy "${rival}" already configures "${service}" (one TrafficPolicy per service): change that one, or delete it first`,
    { issues: [{ path: 'serviceName', message: `TrafficPolicy "${rival}" already configures "${service}"` }] },
  );
}

function notFound(kind: string, name: string): MeshError {
  return new MeshError(ErrorCode.notFound, `${kind} "${name}" does not exist`, { issues: [{ path: 'name', message: 'no such policy' }] });
}

function describe(input: unknown): string {
  if (input && typeof input === 'object') {
    const o = input as { kind?: unknown; name?: unknown };
    if (typeof o.kind === 'string' && typeof o.name === 'string') return `${o.kind} "${o.name}"`;
    if (typeof o.kind === 'string') return o.kind;
  }
  return 'policy';
}
