import { hash } from 'node:crypto';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Inject, Injectable, Optional } from '@nestjs/common';
import { ConfirmedPublisher, followLastValues } from '@novamesh/bus';
import {
  appendJsonMembers,
  decodeForSubject,
  EffectivePolicyV1,
  lastToken,
  type MeshValidationError,
  type Policy,
  streams,
  subjects,
} from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { computeEffective } from '@novamesh/policy';
import { JETSTREAM, LOGGER, NATS } from './tokens';

/** Hash of what a service's sidecars would do differently: everything but revision and time. */
export function effectiveHash(e: Omit<EffectivePolicyV1, 'revision' | 'updatedAt'> | EffectivePolicyV1): string {
  const { revision: _r, updatedAt: _u, ...content } = e as EffectivePolicyV1;
  return hashOfContentJson(JSON.stringify(content));
}

function hashOfContentJson(json: string): string {
  return hash('sha256', json, 'base64url').slice(0, 22);
}

const encoder = new TextEncoder();

/**
 * The event's JSON from the JSON of its content (what `effectiveHash` hashes) with `revision` and
 * `updatedAt` appended: byte for byte `JSON.stringify({ ...content, revision, updatedAt })`, so
 * the content is serialized once, for the hash and the message.
 */
export function eventJson(contentJson: string, revision: number, updatedAt: string): string {
  return appendJsonMembers(contentJson, { revision, updatedAt });
}

export interface EffectivePublisherOptions {
  /** Publications sent and not yet seen stored, at once, over all services (default 256). */
  maxInFlight?: number;
  /** Publications queued or in flight before `refresh` makes its caller wait (default 4 × maxInFlight). */
  maxPending?: number;
  /** A publication not seen stored after this long has failed (default 5 s, as JetStream's publish timeout). */
  confirmTimeoutMs?: number;
  /** NATS_REPLICAS: a MESH_CONFIG found missing is created again (by this service, its publisher) with this many (default 1). */
  replicas?: number;
  /** POLICY_STREAM_RECHECK: how often MESH_CONFIG is checked for having been deleted or created again (ms, default 10 s). */
  streamRecheckMs?: number;
}

/** Optional provider of EffectivePublisherOptions (the defaults otherwise). */
export const EFFECTIVE_PUBLISHER_OPTIONS = Symbol('EFFECTIVE_PUBLISHER_OPTIONS');

/** The last publication queued for a service and not settled yet: the tail of its chain. */
interface Link {
  hash: string;
  done: Promise<void>;
}

/** One effective policy to publish: the event, its JSON and its content hash. */
interface Publication {
  service: string;
  revision: number;
  sources: number;
  json: string;
  hash: string;
  /** Stream sequence of the unreadable message this publication replaces (its message id then differs from the last one's). */
  over?: number;
}

/**
 * Publishes each service's effective policy on `mesh.v1.config.policy.<service>` when — and
 * only when — it differs from the last one in the stream (or the last one queued). Every replica
 * runs this from the same KV watch; identical publications carry the same `Nats-Msg-Id` and the
 * stream keeps one.
 *
 * `refresh` queues the publication and returns, so a change that touches every service (a
 * mesh-wide policy) publishes them concurrently — at most `maxInFlight` not yet confirmed —
 * instead of one publish-and-confirm after the other. A publication goes to the stream's subject
 * over core NATS, and is confirmed when the follow of MESH_CONFIG (which every replica runs anyway,
 * to know the stream's last values) delivers the stored message with its message id: the stream
 * is read once instead of also answering every publication with an ack (a request, a reply and
 * their bookkeeping per service made most of the service's work for a mesh-wide change). Messages
 * from one connection are stored in the order they were sent. Per service the publications form
 * a chain: one starts only after the previous one for that service settled, so a later revision
 * is never overtaken by an earlier one. Beyond `maxPending` queued publications `refresh` waits,
 * which keeps the caller (the KV watch) from running far ahead. A publication not seen stored
 * within `confirmTimeoutMs` (refused by the stream, lost with the connection) is logged and
 * forgotten: the next change of that service publishes again, as after a failed publish-and-ack.
 */
@Injectable()
export class EffectivePublisherService {
  private readonly published = new Map<string, string>();
  private readonly resetListeners: (() => void)[] = [];
  private readonly unreadableListeners: ((service: string, seq: number) => void)[] = [];
  private readonly chains = new Map<string, Link>();
  /** Sends over core NATS and confirms from the follow; the context of a publication is its content hash. */
  private readonly confirms: ConfirmedPublisher<string>;
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
    @Inject(NATS) nc: Pick<NatsConnection, 'publish'>,
    @Inject(LOGGER) logger: Logger,
    @Optional() @Inject(EFFECTIVE_PUBLISHER_OPTIONS) private readonly opts: EffectivePublisherOptions = {},
  ) {
    this.log = logger.child({ component: 'effective-publisher' });
    this.maxInFlight = opts.maxInFlight ?? 256;
    this.maxPending = opts.maxPending ?? 4 * this.maxInFlight;
    this.confirms = new ConfirmedPublisher<string>({ nc, confirmTimeoutMs: opts.confirmTimeoutMs });
    if (!(this.maxInFlight >= 1 && this.maxPending >= 1)) throw new RangeError('maxInFlight and maxPending must be at least 1');
  }

  /**
   * Loads what the stream already holds, so a restart republishes nothing that did not change, and
   * keeps following it: every stored message updates the last values and confirms publications.
   */
  async start(): Promise<void> {
    const view = await followLastValues({
      js: this.js,
      stream: streams.config,
      filterSubject: subjects.effectivePolicyEach,
      logger: this.log,
      provision: { replicas: this.opts.replicas ?? 1 },
      recheckMs: this.opts.streamRecheckMs,
      onMessage: (m) =>
        this.stored(m.subject, this.confirms.msgIdOf(m.headers), m.seq, () =>
          decodeForSubject(EffectivePolicyV1, m.subject, m.data, 'effective policy'),
        ),
      // MESH_CONFIG was created again: what it held is gone, so every service is published anew.
      onReset: () => {
        this.published.clear();
        for (const l of this.resetListeners) l();
      },
    });
    this.stopFn = view.stop;
  }

  /**
   * A message stored in MESH_CONFIG at `seq` (the follow delivers them in stream order): records
   * it as its service's last value and confirms this replica's publication with that message id —
   * whose content was hashed when it was queued, so it is not parsed and hashed again. Any other
   * message is decoded by `read`, which throws for one that is no effective policy of the subject's service.
   */
  stored(subject: string, msgId: string | undefined, seq: number, read: () => EffectivePolicyV1): void {
    const mine = this.confirms.observe(subject, msgId, seq);
    if (mine) {
      this.published.set(lastToken(subject), mine.context);
      return;
    }
    const service = lastToken(subject);
    let e: EffectivePolicyV1;
    try {
      e = read();
    } catch (caught) {
      // A stray publish on a service's subject: what the stream holds is no effective policy of it,
      // for every reader. The service's effective policy is computed and published over it.
      const err = caught as MeshValidationError;
      this.log.warn({ subject, seq, reason: err.message, issues: err.issues }, 'unreadable effective policy in the stream; republishing');
      this.published.delete(service);
      for (const l of this.unreadableListeners) l(service, seq);
      return;
    }
    this.published.set(e.service, effectiveHash(e));
  }

  /** Called with a service whose subject turned out to hold something unreadable (see {@link stored}): its effective policy must be published again. */
  onUnreadable(listener: (service: string, seq: number) => void): void {
    this.unreadableListeners.push(listener);
  }

  /**
   * Recomputes one service's effective policy and, if it changed, queues its publication behind
   * the ones queued for that service before; resolves true when queued (see `idle` for when it is
   * in the stream), false when nothing changed.
   */
  async refresh(
    service: string,
    policies: { policy: Policy; revision: number }[],
    changeRevision: number,
    /** The stream sequence of an unreadable message this publication replaces (see {@link onUnreadable}). */
    over?: number,
  ): Promise<boolean> {
    const effective = computeEffective(service, policies);
    // Serialized once: the hash is over this JSON (effectiveHash), the message appends revision and time to it.
    const contentJson = JSON.stringify(effective);
    const hash = hashOfContentJson(contentJson);
    const before = this.chains.get(service);
    if ((before ? before.hash : this.published.get(service)) === hash) return false;
    const publication: Publication = {
      service,
      revision: changeRevision,
      sources: effective.sources.length,
      json: eventJson(contentJson, changeRevision, new Date().toISOString()),
      hash,
      ...(over !== undefined ? { over } : {}),
    };
    this.round ??= { startedAt: performance.now(), published: 0, failed: 0 };
    this.pending++;
    const link: Link = { hash, done: Promise.resolve() };
    link.done = (before?.done ?? Promise.resolve()).then(() => this.publishInTurn(publication, link));
    this.chains.set(service, link);
    while (this.pending >= this.maxPending) await new Promise<void>((r) => this.roomWaiters.push(r));
    return true;
  }

  /** Called when MESH_CONFIG turned out to have been created again (it holds none of the effective policies published before). */
  onReset(listener: () => void): void {
    this.resetListeners.push(listener);
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
  private async publishInTurn(p: Publication, link: Link): Promise<void> {
    const { service, hash } = p;
    // Every replica derives the same id for the same publication (the stream keeps one copy); one
    // replacing an unreadable message names it, or the stream would drop it as the earlier publication's duplicate.
    const msgId = `${service}:${p.revision}:${hash}${p.over !== undefined ? `:over-${p.over}` : ''}`;
    try {
      // Already in the stream (published by another replica meanwhile, seen by the follow).
      if (this.stopped || this.published.get(service) === hash) return;
      await this.slot();
      try {
        // Seen stored while waiting for the slot (another replica's identical copy): the stream would drop ours.
        if (this.stopped || this.published.get(service) === hash) return;
        await this.send(p, msgId);
      } finally {
        this.release();
      }
      if (this.round) this.round.published++;
      this.log.debug({ meshService: service, revision: p.revision, sources: p.sources }, 'effective policy published');
    } catch (err) {
      if (this.round) this.round.failed++;
      this.log.warn({ err, meshService: service }, 'effective policy not published; will retry on the next change');
    } finally {
      if (this.chains.get(service) === link) this.chains.delete(service);
      this.settled();
    }
  }

  /**
   * Publishes over core NATS with `Nats-Msg-Id` (a copy another replica stored already is dropped
   * by the stream, and that one's stored message confirms this one) and resolves once the follow
   * has seen it stored; rejects when it was not sent or not seen stored within the confirm timeout.
   */
  private async send(p: Publication, msgId: string): Promise<void> {
    const outcome = await this.confirms.send(subjects.effectivePolicy(p.service), encoder.encode(p.json), { msgId }, p.hash);
    if (outcome.stored) return;
    if (outcome.reason === 'unsent') throw outcome.error;
    if (outcome.reason === 'closed') throw new Error('stopped before it was seen stored');
    throw new Error(`not seen in stream ${streams.config} within ${this.confirms.timeoutMs}ms`);
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
