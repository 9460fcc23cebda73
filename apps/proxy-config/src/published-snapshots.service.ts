import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Inject, Injectable, Optional } from '@nestjs/common';
import { ConfirmedPublisher, followLastValues } from '@novamesh/bus';
import { headers, lastToken, ProxySnapshotV1, streams, subjects } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import { type CompiledSnapshot, snapshotMessageJson } from '@novamesh/proxy-config';
import { readInput } from './inbound';
import { JETSTREAM, JETSTREAM_MANAGER, LOGGER, NATS } from './tokens';

/** The last snapshot stored for one service, as far as this replica knows. */
interface Stored {
  /** Stream sequence of the message: what a conditional publish expects. */
  seq: number;
  version: number;
  hash: string;
}

const encoder = new TextEncoder();

/** The message id every replica gives a snapshot: `<service>:<version>:<hash>` (the stream keeps one copy of a snapshot two replicas send). */
function snapshotMsgId(s: Pick<ProxySnapshotV1, 'service' | 'version' | 'hash'>): string {
  return `${s.service}:${s.version}:${s.hash}`;
}

/** Conditional publishes lost to another replica in a row before giving up (the caller retries later). */
const MAX_ATTEMPTS = 5;

/**
 * A snapshot over NATS's max_payload (with its headers): it cannot be published, and publishing it
 * again would fail the same way until its content changes (the builder does not retry it).
 */
export class SnapshotTooLargeError extends Error {
  constructor(
    readonly service: string,
    readonly hash: string,
    readonly bytes: number,
    readonly maxPayload: number,
  ) {
    super(
      `the snapshot of ${service} is ${bytes} bytes, which with its headers exceeds the NATS server's max_payload of ${maxPayload} bytes: its sidecars keep their current snapshot. ` +
        'A service without declared upstreams gets every service of the mesh in its snapshot; declare the upstreams it calls, or raise max_payload in the NATS server configuration ' +
        '(a snapshot refused this way is published at the next change of its inputs, or when proxy-config restarts)',
    );
    this.name = 'SnapshotTooLargeError';
  }
}

export interface PublishedSnapshotsOptions {
  /** A publication not seen stored after this long has failed (ms, default 5 s). */
  confirmTimeoutMs?: number;
  /** How often MESH_PROXY is checked for having been created again (ms, default 10 s). */
  streamRecheckMs?: number;
  /** NATS_REPLICAS: a MESH_PROXY found missing is created again (by this service, its publisher) with this many (default 1). */
  replicas?: number;
}

/** Optional provider of PublishedSnapshotsOptions (the defaults otherwise). */
export const PUBLISHED_SNAPSHOTS_OPTIONS = Symbol('PUBLISHED_SNAPSHOTS_OPTIONS');

export type PublishOutcome =
  | { published: true; version: number }
  | { published: false; reason: 'unchanged' | 'published-by-another-replica' };

/**
 * The snapshots in MESH_PROXY: follows the stream (so it knows the last version, hash and stream
 * sequence of every service, across restarts and replicas) and publishes new ones. A publish
 * takes the next version and is conditional on the subject's last sequence being the one this
 * replica saw, so two replicas never store two snapshots with the same version: the loser learns
 * the winner's snapshot from the follow and tries again only if the stored content still differs
 * from its own. Publications go out over core NATS and are confirmed by the follow seeing them
 * stored (ConfirmedPublisher) rather than by a JetStream ack each: for a mesh-wide change that is
 * hundreds of requests, replies and timers fewer, in this service and in nats-server.
 * Concurrent `publish` calls must be for different services (PublishQueue guarantees it).
 */
@Injectable()
export class PublishedSnapshotsService {
  private readonly stored = new Map<string, Stored>();
  private readonly confirms: ConfirmedPublisher<ProxySnapshotV1>;
  private readonly listeners: ((snapshot: ProxySnapshotV1) => void)[] = [];
  private readonly resetListeners: (() => void)[] = [];
  private readonly foreignListeners: ((service: string) => void)[] = [];
  private stopFn: (() => Promise<void>) | undefined;
  private readonly log: Logger;

  constructor(
    @Inject(JETSTREAM) private readonly js: JetStreamClient,
    @Inject(JETSTREAM_MANAGER) private readonly jsm: JetStreamManager,
    @Inject(NATS) private readonly nc: Pick<NatsConnection, 'publish' | 'info'>,
    @Inject(LOGGER) logger: Logger,
    @Optional() @Inject(PUBLISHED_SNAPSHOTS_OPTIONS) private readonly opts: PublishedSnapshotsOptions = {},
  ) {
    this.log = logger.child({ component: 'published-snapshots' });
    this.confirms = new ConfirmedPublisher<ProxySnapshotV1>({ nc, confirmTimeoutMs: opts.confirmTimeoutMs });
  }

  /** Called with every snapshot stored (by any replica), first the retained ones. */
  onSnapshot(listener: (snapshot: ProxySnapshotV1) => void): void {
    this.listeners.push(listener);
  }

  /** Called when MESH_PROXY turned out to have been created again: every snapshot needs publishing anew. */
  onReset(listener: () => void): void {
    this.resetListeners.push(listener);
  }

  /**
   * Called with the service whose subject now holds a message no proxy-config replica published:
   * unreadable, or without the message id (`<service>:<version>:<hash>`) every replica sets. The
   * builder then compiles that service again and publishes its snapshot over it.
   */
  onForeign(listener: (service: string) => void): void {
    this.foreignListeners.push(listener);
  }

  /** Loads the retained snapshots; resolves once this replica knows every service's last version. */
  async start(): Promise<void> {
    const view = await followLastValues({
      js: this.js,
      stream: streams.proxy,
      filterSubject: subjects.proxyConfigEach,
      logger: this.log,
      recheckMs: this.opts.streamRecheckMs,
      provision: { replicas: this.opts.replicas ?? 1 },
      onMessage: (m) => {
        const service = lastToken(m.subject);
        if ((this.stored.get(service)?.seq ?? 0) >= m.seq) return;
        // Our own publications come back here and confirm themselves; they are not decoded and
        // validated a second time (the message id, `<service>:<version>:<hash>`, names the snapshot sent).
        const mine = this.confirms.observe(m.subject, this.confirms.msgIdOf(m.headers), m.seq);
        if (mine) {
          this.see(m.seq, mine.context);
          return;
        }
        const msgId = m.headers?.get(headers.msgId);
        const s = readInput(this.log, ProxySnapshotV1, 'proxy snapshot', m, true);
        if (s) this.see(m.seq, s);
        else this.seeUnreadable(service, m.seq, msgId);
        if (!s || msgId !== snapshotMsgId(s)) {
          this.log.warn(
            { meshService: service, seq: m.seq, msgId },
            'a snapshot no proxy-config replica published was stored; publishing the right one over it',
          );
          for (const l of this.foreignListeners) l(service);
        }
      },
      // MESH_PROXY was created again: sequences start over and it may hold none of the snapshots.
      // Versions keep counting up; every service is built and published again.
      onReset: () => {
        for (const [service, known] of this.stored) this.stored.set(service, { seq: 0, version: known.version, hash: '' });
        for (const l of this.resetListeners) l();
      },
    });
    this.stopFn = view.stop;
  }

  /** Hash of the last stored snapshot of `service`. */
  lastHash(service: string): string | undefined {
    return this.stored.get(service)?.hash;
  }

  /** Publishes `compiled` as the next version of its service, unless the stored snapshot already has its content. */
  async publish(compiled: CompiledSnapshot): Promise<PublishOutcome> {
    const { service } = compiled.content;
    for (let attempt = 1; ; attempt++) {
      const last = this.stored.get(service);
      if (last?.hash === compiled.hash) return { published: false, reason: attempt === 1 ? 'unchanged' : 'published-by-another-replica' };
      const snapshot: ProxySnapshotV1 = {
        ...compiled.content,
        version: (last?.version ?? 0) + 1,
        hash: compiled.hash,
        createdAt: new Date().toISOString(),
      };
      // The content's canonical JSON (what the hash covers) is the message, with the rest appended.
      const data = encoder.encode(snapshotMessageJson(compiled.canonical, snapshot));
      // A copy another replica stored already (same content and version) is dropped by the stream.
      const msgId = snapshotMsgId(snapshot);
      const outcome = await this.confirms.send(
        subjects.proxyConfig(service),
        data,
        // 0 = "no snapshot stored yet for this subject".
        { msgId, expectLastSubjectSequence: last?.seq ?? 0 },
        snapshot,
      );
      if (outcome.stored) {
        this.see(outcome.seq, snapshot);
        return { published: true, version: snapshot.version };
      }
      if (outcome.reason === 'unsent') {
        // The client refuses a message whose payload and headers exceed the server's max_payload.
        const maxPayload = this.nc.info?.max_payload;
        if (maxPayload !== undefined && /max_payload/.test(outcome.error.message))
          throw new SnapshotTooLargeError(service, snapshot.hash, data.length, maxPayload);
        throw outcome.error;
      }
      if (outcome.reason === 'closed') throw new Error(`stopped before snapshot ${msgId} was seen stored`);
      if (outcome.reason === 'timeout') {
        // Refused or lost; the subject may have been purged (a stale expected sequence): read it
        // back, so the caller's retry expects what the stream holds.
        await this.reread(service).catch((err: unknown) =>
          this.log.warn({ err, meshService: service }, 'could not re-read the stored snapshot'),
        );
        throw new Error(`snapshot ${msgId} not seen in stream ${streams.proxy} within ${this.confirms.timeoutMs}ms`);
      }
      // Another replica stored a snapshot first: the follow has recorded it; retry if ours still differs.
      if (attempt >= MAX_ATTEMPTS)
        throw new Error(`snapshot of ${service} lost ${attempt} conditional publishes in a row to other replicas`);
      this.log.debug({ meshService: service, version: snapshot.version, attempt }, 'another replica published first');
    }
  }

  async stop(): Promise<void> {
    await this.stopFn?.();
    this.confirms.close();
  }

  /**
   * Reads the subject's last message back (after a publication was not seen stored). Applied only
   * if the follow recorded nothing for the service meanwhile: what the follow delivers is as new or newer.
   */
  private async reread(service: string): Promise<void> {
    const before = this.stored.get(service);
    const m = await this.jsm.streams.getMessage(streams.proxy, { last_by_subj: subjects.proxyConfig(service) }).catch((e: unknown) => {
      if (e instanceof JetStreamApiError && e.code === JetStreamApiCodes.NoMessageFound) return null;
      throw e;
    });
    if (this.stored.get(service) !== before) return;
    // The stream lost the subject (purged): expect "none" next, but keep counting up.
    if (!m) {
      this.stored.set(service, { seq: 0, version: before?.version ?? 0, hash: '' });
      return;
    }
    const s = readInput(this.log, ProxySnapshotV1, 'proxy snapshot', m, true);
    if (s) this.see(m.seq, s, true);
    else this.seeUnreadable(service, m.seq, m.header?.get(headers.msgId));
  }

  /**
   * An unreadable stored message is still the subject's last: the next conditional publish expects
   * its sequence, and the next version must be above its version — which its message id
   * (`<service>:<version>:<hash>`) tells when the body cannot.
   */
  private seeUnreadable(service: string, seq: number, msgId: string | undefined): void {
    const known = this.stored.get(service)?.version ?? 0;
    const fromId = Number(/^.+:(\d+):[0-9a-f]+$/.exec(msgId ?? '')?.[1] ?? 0);
    this.stored.set(service, { seq, version: Math.max(known, Number.isSafeInteger(fromId) ? fromId : 0), hash: '' });
  }

  /**
   * Records a stored snapshot. Messages arrive in stream order, so an older sequence is a replay and
   * ignored — unless `reread` (the subject's last message now: authoritative even after the stream
   * was recreated with lower sequences). The version never goes down, so no version is reused.
   */
  private see(seq: number, snapshot: ProxySnapshotV1, reread = false): void {
    const known = this.stored.get(snapshot.service);
    if (known && known.seq >= seq && !reread) return;
    this.stored.set(snapshot.service, { seq, version: Math.max(snapshot.version, known?.version ?? 0), hash: snapshot.hash });
    for (const l of this.listeners) l(snapshot);
  }
}
