import { createHash } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import { Inject, Injectable, Optional } from '@nestjs/common';
import { followLastValues, publishJson } from '@novamesh/bus';
import { type EffectivePolicyV1, type Policy, streams, subjects } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { computeEffective } from '@novamesh/policy';
import { JETSTREAM, LOGGER } from './tokens';

/** Hash of what a service's sidecars would do differently: everything but revision and time. */
export function effectiveHash(e: Omit<EffectivePolicyV1, 'revision' | 'updatedAt'> | EffectivePolicyV1): string {
  const { revision: _r, updatedAt: _u, ...content } = e as EffectivePolicyV1;
  return createHash('sha256').update(JSON.stringify(content)).digest('base64url').slice(0, 22);
}

export interface EffectivePublisherOptions {
  /** Publications awaiting their stream ack at once, over all services (default 64). */
  maxInFlight?: number;
  /** Publications queued or in flight before `refresh` makes its caller wait (default 4 × maxInFlight). */
  maxPending?: number;
}

/** Optional provider of EffectivePublisherOptions (the defaults otherwise). */
export const EFFECTIVE_PUBLISHER_OPTIONS = Symbol('EFFECTIVE_PUBLISHER_OPTIONS');

/** The last publication queued for a service and not settled yet: the tail of its chain. */
interface Link {
  hash: string;
  done: Promise<void>;
}

/**
 * Publishes each service's effective policy on `mesh.v1.config.policy.<service>` when — and
 * only when — it differs from the last one in the stream (or the last one queued). Every replica
 * runs this from the same KV watch; identical publications carry the same `Nats-Msg-Id` and the
 * stream keeps one.
 *
 * `refresh` queues the publication and returns, so a change that touches every service (a
 * mesh-wide policy) publishes them concurrently — at most `maxInFlight` awaiting their ack —
 * instead of one publish-and-ack after the other. Per service the publications form a chain: one
 * starts only after the previous one for that service settled, so a later revision is never
 * overtaken by an earlier one. Beyond `maxPending` queued publications `refresh` waits, which
 * keeps the caller (the KV watch) from running far ahead. A failed publication is logged and
 * forgotten: the next change of that service publishes again (as it did when publishing inline).
 */
@Injectable()
export class EffectivePublisherService {
  private readonly published = new Map<string, string>();
  private readonly chains = new Map<string, Link>();
  private readonly maxInFlight: number;
  private readonly maxPending: number;
  private pending = 0;
  private inFlight = 0;
  private readonly slotWaiters: (() => void)[] = [];
  private readonly roomWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private round: { startedAt: number; published: number; failed: number } | undefined;
  private stopped = false;
  private stopFn: (() => Promise<void>) | undefined;
  private readonly log: Logger;

  constructor(
    @Inject(JETSTREAM) private readonly js: JetStreamClient,
    @Inject(LOGGER) logger: Logger,
    @Optional() @Inject(EFFECTIVE_PUBLISHER_OPTIONS) opts: EffectivePublisherOptions = {},
  ) {
    this.log = logger.child({ component: 'effective-publisher' });
    this.maxInFlight = opts.maxInFlight ?? 64;
    this.maxPending = opts.maxPending ?? 4 * this.maxInFlight;
    if (!(this.maxInFlight >= 1 && this.maxPending >= 1)) throw new RangeError('maxInFlight and maxPending must be at least 1');
  }

  /** Loads what the stream already holds, so a restart republishes nothing that did not change. */
  async start(): Promise<void> {
    const view = await followLastValues({
      js: this.js,
      stream: streams.config,
      filterSubject: subjects.effectivePolicyAll,
      logger: this.log,
      onMessage: (m) => {
        const e = m.json<EffectivePolicyV1>();
        this.published.set(e.service, effectiveHash(e));
      },
    });
    this.stopFn = view.stop;
  }

  /**
   * Recomputes one service's effective policy and, if it changed, queues its publication behind
   * the ones queued for that service before; resolves true when queued (see `idle` for when it is
   * in the stream), false when nothing changed.
   */
  async refresh(service: string, policies: { policy: Policy; revision: number }[], changeRevision: number): Promise<boolean> {
    const effective = computeEffective(service, policies);
    const hash = effectiveHash(effective);
    const before = this.chains.get(service);
    if ((before ? before.hash : this.published.get(service)) === hash) return false;
    const event: EffectivePolicyV1 = { ...effective, revision: changeRevision, updatedAt: new Date().toISOString() };
    this.round ??= { startedAt: performance.now(), published: 0, failed: 0 };
    this.pending++;
    const link: Link = { hash, done: Promise.resolve() };
    link.done = (before?.done ?? Promise.resolve()).then(() => this.publishInTurn(service, event, hash, link));
    this.chains.set(service, link);
    while (this.pending >= this.maxPending) await new Promise<void>((r) => this.roomWaiters.push(r));
    return true;
  }

  /** Resolves once every queued publication has settled. */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stops following; publications not started yet are dropped, those in flight finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.idle();
    await this.stopFn?.();
  }

  /** One link of a service's chain: runs after the previous one settled; never rejects. */
  private async publishInTurn(service: string, event: EffectivePolicyV1, hash: string, link: Link): Promise<void> {
    try {
      // Already in the stream (published by another replica meanwhile, seen by the follow).
      if (this.stopped || this.published.get(service) === hash) return;
      await this.slot();
      try {
        await publishJson(this.js, subjects.effectivePolicy(service), event, { msgId: `${service}:${event.revision}:${hash}` });
      } finally {
        this.release();
      }
      this.published.set(service, hash);
      if (this.round) this.round.published++;
      this.log.debug({ meshService: service, revision: event.revision, sources: event.sources.length }, 'effective policy published');
    } catch (err) {
      if (this.round) this.round.failed++;
      this.log.warn({ err, meshService: service }, 'effective policy not published; will retry on the next change');
    } finally {
      if (this.chains.get(service) === link) this.chains.delete(service);
      this.settled();
    }
  }

  private async slot(): Promise<void> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return;
    }
    // FIFO: the slot passes directly from a finished publication to the longest waiting one.
    await new Promise<void>((r) => this.slotWaiters.push(r));
  }

  private release(): void {
    const next = this.slotWaiters.shift();
    if (next) next();
    else this.inFlight--;
  }

  private settled(): void {
    this.pending--;
    if (this.pending < this.maxPending) for (const r of this.roomWaiters.splice(0)) r();
    if (this.pending > 0) return;
    const round = this.round;
    this.round = undefined;
    if (round?.published || round?.failed)
      this.log.info(
        { published: round.published, failed: round.failed, ms: Math.round((performance.now() - round.startedAt) * 10) / 10 },
        'effective policies published',
      );
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
