import { type MsgHdrs, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { injectTrace } from './trace';

const MSG_ID = 'Nats-Msg-Id';

export interface ConfirmedPublisherOptions {
  /** The connection the messages go out on (core NATS publish). */
  nc: Pick<NatsConnection, 'publish'>;
  /** A publication not seen stored after this long has failed (default 5 s, as JetStream's publish timeout). */
  confirmTimeoutMs?: number;
}

export interface ConfirmedPublishOptions {
  /** `Nats-Msg-Id`: the stream drops a second message with this id within its duplicate window. */
  msgId: string;
  /**
   * `Nats-Expected-Last-Subject-Sequence`: the stream stores the message only if the subject's
   * last message has this sequence (0: none). At most one such publication per subject at a time.
   */
  expectLastSubjectSequence?: number;
}

/**
 * What became of a publication: stored at `seq` (this copy, or another publisher's copy with the
 * same message id); `superseded` when another message stored on the subject of a conditional
 * publication came after the expected sequence (`seq`): almost always ours was refused — or,
 * rarely, ours was stored and replaced before the follow read it (see `observe`); `timeout` when
 * it was not seen stored within the confirm timeout (refused by the stream, a stale expected
 * sequence, lost with the connection, stored and replaced unseen); `unsent` when the client
 * refused to send it (`error`: e.g. over the server's max_payload, or the connection closed);
 * `closed` when `close` was called before it settled.
 */
export type ConfirmedOutcome<C> =
  | { stored: true; seq: number; context: C }
  | { stored: false; reason: 'superseded'; seq: number }
  | { stored: false; reason: 'timeout' }
  | { stored: false; reason: 'unsent'; error: Error }
  | { stored: false; reason: 'closed' };

interface Unconfirmed<C> {
  msgId: string;
  subject: string;
  expected: number | undefined;
  context: C;
  deadline: number;
  settle(outcome: ConfirmedOutcome<C>): void;
}

/**
 * Publishes to a stream's subjects over core NATS and learns that a message was stored from the
 * publisher's own follow of that stream, instead of a JetStream ack per message. For a service
 * that follows the stream anyway (to know its last values), that reads each stored message once
 * instead of also having the server answer every publication — a reply, and in the client a
 * request, a timer and an error stack per message — which made most of the work of publishing a
 * mesh-wide change. Messages from one connection are stored in the order they were sent.
 *
 * The caller feeds `observe` with every message its follow delivers (in stream order). A
 * publication is confirmed by the stored message with its message id — its own copy, or an
 * identical one another replica stored while ours was pending (the stream drops the second; one
 * seen before `send` cannot confirm it, so a caller checks the stream's last value first). A
 * conditional publication (expected last subject sequence) is settled as `superseded` as soon as
 * another message on its subject with a higher sequence is seen: the stream refused ours — unless
 * ours was stored and then replaced before the follow read it, which a follow with pull credit
 * left (followLastValues keeps a large budget) does not let happen; either way the subject's last
 * value is now that other message, which is what a caller retries against. Publications sent in
 * one event-loop turn leave together, at the next `setImmediate` (one socket write).
 * Single-threaded: use from one event loop.
 */
export class ConfirmedPublisher<C = undefined> {
  private readonly unconfirmed = new Map<string, Unconfirmed<C>>();
  /** The conditional publication in flight per subject. */
  private readonly conditional = new Map<string, Unconfirmed<C>>();
  private outbox: { entry: Unconfirmed<C>; data: Uint8Array; headers: MsgHdrs }[] = [];
  /** Fails the publications whose time is up (one timer for all, armed for the oldest). */
  private expiry: NodeJS.Timeout | undefined;
  private readonly confirmTimeoutMs: number;

  constructor(private readonly opts: ConfirmedPublisherOptions) {
    this.confirmTimeoutMs = opts.confirmTimeoutMs ?? 5_000;
    if (!(this.confirmTimeoutMs > 0)) throw new RangeError('confirmTimeoutMs must be positive');
  }

  /** Publications sent and not settled yet (a follow may skip reading message ids while it is 0). */
  get pending(): number {
    return this.unconfirmed.size;
  }

  get timeoutMs(): number {
    return this.confirmTimeoutMs;
  }

  /**
   * The message id of a message the follow delivered, for `observe` — read only while something is
   * pending: with nothing in flight no message can be this publisher's, and the headers stay unparsed.
   */
  msgIdOf(headers: MsgHdrs | undefined): string | undefined {
    return (this.unconfirmed.size && headers?.get(MSG_ID)) || undefined;
  }

  /**
   * Queues `data` for `subject` (sent at the next `setImmediate`) and resolves with its outcome.
   * `context` comes back with the confirmation (and from `observe`). Rejects only when another
   * conditional publication on the same subject is still in flight (a caller's bug).
   */
  send(subject: string, data: Uint8Array, opts: ConfirmedPublishOptions, context: C): Promise<ConfirmedOutcome<C>> {
    const { msgId, expectLastSubjectSequence: expected } = opts;
    const before = expected === undefined ? undefined : this.conditional.get(subject);
    if (before && before.msgId !== msgId)
      return Promise.reject(new Error(`a conditional publication on ${subject} is already in flight (${before.msgId})`));
    return new Promise((resolve) => {
      const entry: Unconfirmed<C> = {
        msgId,
        subject,
        expected,
        context,
        deadline: performance.now() + this.confirmTimeoutMs,
        settle: (outcome) => {
          if (this.unconfirmed.get(msgId) === entry) this.unconfirmed.delete(msgId);
          if (this.conditional.get(subject) === entry) this.conditional.delete(subject);
          resolve(outcome);
        },
      };
      // A copy of the same message id still unconfirmed (sent again) is settled by the same stored message.
      this.unconfirmed.get(msgId)?.settle({ stored: false, reason: 'timeout' });
      this.unconfirmed.set(msgId, entry);
      if (expected !== undefined) this.conditional.set(subject, entry);
      this.armExpiry();
      const h = injectTrace(natsHeaders());
      h.set(MSG_ID, msgId);
      if (expected !== undefined) h.set('Nats-Expected-Last-Subject-Sequence', String(expected));
      if (this.outbox.push({ entry, data, headers: h }) === 1) setImmediate(() => this.sendOutbox());
    });
  }

  /**
   * A message the follow delivered (stored at `seq` on `subject`, with `msgId` if it has one):
   * confirms the publication with that message id and returns its context, or settles the
   * conditional publication on that subject that it beat. Undefined when it was not this
   * publisher's.
   */
  observe(subject: string, msgId: string | undefined, seq: number): { context: C } | undefined {
    const mine = msgId === undefined ? undefined : this.unconfirmed.get(msgId);
    if (mine) {
      mine.settle({ stored: true, seq, context: mine.context });
      return { context: mine.context };
    }
    const cond = this.conditional.get(subject);
    if (cond?.expected !== undefined && seq > cond.expected) cond.settle({ stored: false, reason: 'superseded', seq });
    return undefined;
  }

  /** Settles everything unconfirmed as `closed` (the connection is going away). */
  close(): void {
    // Settling deletes the entry: a Map iterator takes deletions of visited entries in its stride.
    for (const u of this.unconfirmed.values()) u.settle({ stored: false, reason: 'closed' });
    if (this.expiry) clearTimeout(this.expiry);
    this.expiry = undefined;
  }

  private armExpiry(): void {
    if (this.expiry) return;
    const oldest = this.unconfirmed.values().next().value;
    if (!oldest) return;
    this.expiry = setTimeout(
      () => {
        this.expiry = undefined;
        const now = performance.now();
        // Map order is sending order, so the deadlines are ascending (a re-sent id moves to the end).
        for (const u of this.unconfirmed.values()) {
          if (u.deadline > now) break;
          u.settle({ stored: false, reason: 'timeout' });
        }
        this.armExpiry();
      },
      Math.max(0, oldest.deadline - performance.now()),
    );
    this.expiry.unref();
  }

  /** Sends what was queued since the last call; one the client refuses to send is settled as `unsent` at once. */
  private sendOutbox(): void {
    const batch = this.outbox;
    this.outbox = [];
    for (const { entry, data, headers } of batch) {
      if (this.unconfirmed.get(entry.msgId) !== entry) continue; // settled meanwhile (closed, sent again)
      try {
        this.opts.nc.publish(entry.subject, data, { headers });
      } catch (err) {
        entry.settle({ stored: false, reason: 'unsent', error: err instanceof Error ? err : new Error(String(err)) });
      }
    }
  }
}
