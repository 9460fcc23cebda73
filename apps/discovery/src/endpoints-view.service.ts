import type { JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { Inject, Injectable } from '@nestjs/common';
import { followLastValues } from '@novamesh/bus';
import { decodeForSubject, EndpointSetV1, lastToken, type MeshValidationError, streams, subjects } from '@novamesh/contracts';
import type { Logger } from '@novamesh/observability';
import type { DiscoveryConfig } from './config';
import { CONFIG, JETSTREAM, LOGGER } from './tokens';

/**
 * The published endpoint sets, as any watcher sees them: an ordered consumer over the
 * endpoints stream starting at the last message of each service. Queries are answered from
 * here, so a query and a watch never disagree. When the stream turns out to have been deleted and
 * created again (it may hold none of the sets), the view starts over from what the new stream
 * holds and `resets` counts up: the sweeper then republishes every set the registry has. Until a
 * service's set is in the new stream, queries still answer with the set it had before.
 */
/** The message id every discovery replica publishes a service's endpoint set under (JetStream deduplicates on it). */
export function endpointSetMsgId(service: string, revision: number): string {
  return `${service}:${revision}`;
}

@Injectable()
export class EndpointsViewService {
  /** What the stream holds. */
  private readonly sets = new Map<string, EndpointSetV1>();
  /** Sets from before the stream was created again that the new stream does not hold yet. */
  private readonly carried = new Map<string, EndpointSetV1>();
  private readonly sent = new Map<string, EndpointSetV1>();
  private stopFn: (() => Promise<void>) | undefined;
  private readonly log: Logger;
  /** How many times the stream was found created again. */
  resets = 0;
  /** How many stored messages were not readable endpoint sets (see {@link read}). */
  unreadable = 0;

  constructor(
    @Inject(JETSTREAM) private readonly js: JetStreamClient,
    @Inject(CONFIG) private readonly cfg: DiscoveryConfig,
    @Inject(LOGGER) logger: Logger,
  ) {
    this.log = logger.child({ component: 'endpoints-view' });
  }

  async start(): Promise<void> {
    const view = await followLastValues({
      js: this.js,
      stream: streams.endpoints,
      filterSubject: subjects.endpointsEach,
      logger: this.log,
      recheckMs: this.cfg.streamRecheckMs,
      // Discovery publishes the endpoint sets: a MESH_ENDPOINTS found missing is created again here.
      provision: { replicas: this.cfg.replicas },
      onReset: () => {
        for (const [name, set] of this.sets) this.carried.set(name, set);
        this.sets.clear();
        this.sent.clear();
        this.resets++;
      },
      onMessage: (m) => {
        const msgId = m.headers?.get('Nats-Msg-Id');
        const own = msgId ? this.sent.get(msgId) : undefined;
        if (own && msgId) this.sent.delete(msgId);
        const set = own ?? this.read(m); // our own publish: no need to parse it again
        if (!set) return;
        const cur = this.sets.get(set.service);
        if (!cur || cur.revision <= set.revision) this.sets.set(set.service, set);
        this.carried.delete(set.service);
      },
    });
    this.stopFn = view.stop;
  }

  /**
   * A stored message as an endpoint set, or undefined — after logging why — when it is not a
   * readable set of its subject's service (a stray publish). The stream then holds no set of that
   * service: it leaves the view, and `unreadable` counts up, so the sweeper reconciles at once and
   * republishes the set the registry has, for every reader of the stream.
   */
  private read(m: JsMsg): EndpointSetV1 | undefined {
    const service = lastToken(m.subject);
    let set: EndpointSetV1;
    try {
      set = decodeForSubject(EndpointSetV1, m.subject, m.data, 'endpoint set');
    } catch (e) {
      const err = e as MeshValidationError;
      this.log.warn(
        { subject: m.subject, seq: m.seq, reason: err.message, issues: err.issues },
        'unreadable endpoint set in the stream; republishing',
      );
      return this.stray(service);
    }
    // Every discovery replica publishes a set under the message id `<service>:<revision>`: a set
    // without it, however well-formed, was published by something else.
    const msgId = m.headers?.get('Nats-Msg-Id');
    if (msgId !== endpointSetMsgId(set.service, set.revision)) {
      this.log.warn(
        { subject: m.subject, seq: m.seq, msgId: msgId || undefined, revision: set.revision },
        'endpoint set in the stream not published by discovery; republishing',
      );
      return this.stray(service);
    }
    return set;
  }

  /** The stream holds no set of `service` that discovery published: it leaves the view, and the sweeper reconciles at once. */
  private stray(service: string): undefined {
    this.sets.delete(service);
    this.unreadable++;
    return undefined;
  }

  /**
   * Notes a set this replica is publishing under `msgId` ({@link endpointSetMsgId}): when it comes back from the stream it
   * is taken as is instead of parsed. It only enters the view once the stream has it, so the
   * reconcile still sees publishes that were lost.
   */
  expect(msgId: string, set: EndpointSetV1): void {
    if (this.sent.size > 10_000) this.sent.clear(); // lost publishes must not accumulate
    this.sent.set(msgId, set);
  }

  /** The service's set, from the stream or, just after the stream was created again, from before. */
  get(name: string): EndpointSetV1 | undefined {
    return this.sets.get(name) ?? this.carried.get(name);
  }

  all(): EndpointSetV1[] {
    return [...this.sets.values(), ...this.carried.values()];
  }

  /** Drops the sets carried over a reset for which `gone` is true (they will not be republished). */
  forgetCarried(gone: (name: string) => boolean): void {
    for (const name of this.carried.keys()) if (gone(name)) this.carried.delete(name);
  }

  /** The service's set as the stream holds it (what the sweeper compares with the registry). */
  stored(name: string): EndpointSetV1 | undefined {
    return this.sets.get(name);
  }

  async stop(): Promise<void> {
    await this.stopFn?.();
  }
}
