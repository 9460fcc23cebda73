import { type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node';
import { TestNats } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfirmedPublisher } from './confirmed-publisher';
import { drainBus } from './connection';
import { followLastValues } from './last-values';

// ConfirmedPublisher against a real nats-server: a last-value-per-subject stream like MESH_PROXY,
// followed the way proxy-config and policy follow theirs, the follow feeding `observe`.
const STREAM = 'CONFIRM_TEST';
const encoder = new TextEncoder();

let nats: TestNats;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;

beforeAll(async () => {
  nats = await TestNats.start();
  nc = await connect({ servers: nats.url, name: 'confirmed-publisher-test' });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: STREAM, subjects: ['cp.>'], max_msgs_per_subject: 1, duplicate_window: 60_000_000_000 });
});

afterAll(async () => {
  await drainBus(nc);
  await nats?.dispose();
});

/** A publisher whose `observe` is fed by a follow of the stream; `stop` ends the follow. */
async function followed(confirmTimeoutMs = 5_000) {
  const publisher = new ConfirmedPublisher<string>({ nc, confirmTimeoutMs });
  const observed: { subject: string; seq: number; mine: boolean }[] = [];
  const view = await followLastValues({
    js,
    stream: STREAM,
    filterSubject: 'cp.>',
    onMessage: (m) => {
      const mine = publisher.observe(m.subject, m.headers?.get('Nats-Msg-Id') || undefined, m.seq);
      observed.push({ subject: m.subject, seq: m.seq, mine: mine !== undefined });
    },
  });
  return { publisher, observed, stop: view.stop };
}

async function lastSeq(subject: string): Promise<number> {
  return (await jsm.streams.getMessage(STREAM, { last_by_subj: subject }))?.seq ?? 0;
}

describe('ConfirmedPublisher (real JetStream)', () => {
  it('confirms each publication with the sequence it was stored at, once the follow sees it', async () => {
    const { publisher, stop } = await followed();
    const sends = Array.from({ length: 200 }, (_, i) =>
      publisher.send(`cp.batch.s${i}`, encoder.encode(`value ${i}`), { msgId: `batch-${i}` }, `ctx-${i}`),
    );
    expect(publisher.pending).toBe(200);
    const outcomes = await Promise.all(sends);
    expect(publisher.pending).toBe(0);
    for (const [i, o] of outcomes.entries()) {
      expect(o).toMatchObject({ stored: true, context: `ctx-${i}` });
      if (o.stored) expect(o.seq).toBe(await lastSeq(`cp.batch.s${i}`));
    }
    // Sent in order from one connection: stored in order.
    const seqs = outcomes.map((o) => (o.stored ? o.seq : 0));
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
    await stop();
  });

  it('takes an identical message another publisher stored (same message id) as its own confirmation', async () => {
    const { publisher, stop } = await followed();
    const h = natsHeaders();
    h.set('Nats-Msg-Id', 'dup-1');
    // Whichever copy reaches the stream first is stored, the other dropped as a duplicate.
    const [outcome, theirs] = await Promise.all([
      publisher.send('cp.dup', encoder.encode('same'), { msgId: 'dup-1' }, 'mine'),
      js.publish('cp.dup', encoder.encode('same'), { headers: h }),
    ]);
    expect(outcome).toEqual({ stored: true, seq: await lastSeq('cp.dup'), context: 'mine' });
    expect(theirs.seq).toBe(await lastSeq('cp.dup'));
    await stop();
  });

  it('settles a conditional publication as superseded when another message on its subject comes after the expected sequence, and as timed out when nothing does', async () => {
    const { publisher, stop } = await followed(400);
    const first = await publisher.send('cp.cond', encoder.encode('v1'), { msgId: 'cond-1', expectLastSubjectSequence: 0 }, 'v1');
    if (!first.stored) throw new Error('the first conditional publication was not stored');

    // In flight when another message is stored on the subject first (a plain publish on the same
    // connection leaves before ours, which goes at the next setImmediate): superseded at once.
    const pending = publisher.send('cp.cond', encoder.encode('v2'), { msgId: 'cond-2', expectLastSubjectSequence: first.seq }, 'v2');
    nc.publish('cp.cond', encoder.encode('v2 by another'));
    const started = performance.now();
    const result = await pending;
    expect(result).toEqual({ stored: false, reason: 'superseded', seq: await lastSeq('cp.cond') });
    expect(result.stored === false && result.reason === 'superseded' && result.seq).toBeGreaterThan(first.seq);
    expect(performance.now() - started).toBeLessThan(400);
    expect(publisher.pending).toBe(0);

    // The message at the expected sequence itself (a follow that lags delivers it late) does not settle it.
    const last = await lastSeq('cp.cond');
    const late = publisher.send('cp.cond', encoder.encode('v3'), { msgId: 'cond-3', expectLastSubjectSequence: last }, 'v3');
    expect(publisher.observe('cp.cond', 'someone-else', last)).toBeUndefined();
    expect(publisher.pending).toBe(1);
    expect(await late).toMatchObject({ stored: true, context: 'v3' });

    // A stale expectation nobody follows up on: refused by the stream, nothing to observe, timed out.
    expect(await publisher.send('cp.cond', encoder.encode('v4'), { msgId: 'cond-4', expectLastSubjectSequence: 1 }, 'v4')).toEqual({
      stored: false,
      reason: 'timeout',
    });
    expect(publisher.pending).toBe(0);
    await stop();
  });

  it('settles what is pending as closed on close, without waiting for the timeout', async () => {
    const publisher = new ConfirmedPublisher<string>({ nc, confirmTimeoutMs: 60_000 });
    // No follow feeds this one: nothing can confirm it.
    const pending = publisher.send('cp.closed', encoder.encode('x'), { msgId: 'closed-1' }, 'x');
    publisher.close();
    expect(await pending).toEqual({ stored: false, reason: 'closed' });
    expect(publisher.pending).toBe(0);
  });

  it('refuses a second conditional publication on a subject while one is in flight', async () => {
    const { publisher, stop } = await followed();
    const seq = await lastSeq('cp.one');
    const a = publisher.send('cp.one', encoder.encode('a'), { msgId: 'one-a', expectLastSubjectSequence: seq }, 'a');
    await expect(publisher.send('cp.one', encoder.encode('b'), { msgId: 'one-b', expectLastSubjectSequence: seq }, 'b')).rejects.toThrow(
      /already in flight \(one-a\)/,
    );
    expect(await a).toMatchObject({ stored: true, context: 'a' });
    await stop();
  });
});
