import { type JetStreamClient, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { streams, subjects } from '@novamesh/contracts';
import { recreateStream, TestNats, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { drainBus } from './connection';
import { followLastValue, followLastValues, lastValues } from './last-values';
import { createMeshStream, proxyStream } from './provision';

// followLastValue against a real nats-server: a last-value-per-subject stream like MESH_PROXY.
const STREAM = 'LV_TEST';

let nats: TestNats;
let nc: NatsConnection;
let js: JetStreamClient;

beforeAll(async () => {
  nats = await TestNats.start();
  nc = await connect({ servers: nats.url, name: 'last-value-test', maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: STREAM, subjects: ['lv.>'], max_msgs_per_subject: 1 });
});

afterAll(async () => {
  await drainBus(nc);
  await nats?.dispose();
});

type Seen = { value: string; source: 'live' | 'stored' };

/** A logger that records the messages a follow logs (it uses only these four levels). */
function recordingLogger() {
  const logged: string[] = [];
  const record = (_o: unknown, msg: string) => {
    logged.push(msg);
  };
  const logger = { warn: record, info: record, error: record, debug: () => undefined };
  return { logged, logger: logger as unknown as Parameters<typeof followLastValues>[0]['logger'] };
}

function follow(conn: NatsConnection, subject: string, reconcileMs = 60_000) {
  const seen: Seen[] = [];
  const decoder = new TextDecoder();
  const f = followLastValue({
    nc: conn,
    stream: STREAM,
    subject,
    reconcileMs,
    onValue: (data, source) => seen.push({ value: decoder.decode(data), source }),
  });
  return { seen, ...f };
}

describe('followLastValue', () => {
  it('delivers the stored value first, then each change live, with no consumer on the server', async () => {
    await js.publish('lv.a', 'v1');
    const f = follow(nc, 'lv.a');
    await f.refresh();
    expect(f.seen).toEqual([{ value: 'v1', source: 'stored' }]);
    await js.publish('lv.a', 'v2');
    await js.publish('lv.a', 'v3');
    await waitFor(() => f.seen.length === 3, { timeoutMs: 5_000 });
    expect(f.seen.slice(1)).toEqual([
      { value: 'v2', source: 'live' },
      { value: 'v3', source: 'live' },
    ]);
    const info = await (await jetstreamManager(nc)).streams.info(STREAM);
    expect(info.state.consumer_count).toBe(0);
    f.stop();
    await js.publish('lv.a', 'v4');
    await new Promise((r) => setTimeout(r, 200));
    expect(f.seen).toHaveLength(3);
  });

  it('a conditional publish that lost still arrives live; the stored value (read back on refresh) is the winner', async () => {
    const first = await js.publish('lv.b', 'v1');
    const f = follow(nc, 'lv.b');
    await f.refresh();
    await js.publish('lv.b', 'winner', { expect: { lastSubjectSequence: first.seq } });
    await expect(js.publish('lv.b', 'loser', { expect: { lastSubjectSequence: first.seq } })).rejects.toThrow();
    await waitFor(() => f.seen.length === 3, { timeoutMs: 5_000 });
    expect(f.seen.slice(1)).toEqual([
      { value: 'winner', source: 'live' },
      { value: 'loser', source: 'live' },
    ]);
    await f.refresh();
    expect(f.seen.at(-1)).toEqual({ value: 'winner', source: 'stored' });
    f.stop();
  });

  it('reads the stored value back every reconcile period', async () => {
    await js.publish('lv.c', 'v1');
    const f = follow(nc, 'lv.c', 150);
    await waitFor(() => f.seen.filter((s) => s.source === 'stored').length >= 3, { timeoutMs: 5_000 });
    expect(new Set(f.seen.map((s) => s.value))).toEqual(new Set(['v1']));
    f.stop();
  });

  it('follows live before the stream exists, and catches up once it does', async () => {
    const f = follow(nc, 'early.x', 200);
    await f.refresh();
    expect(f.seen).toEqual([]);
    nc.publish('early.x', 'plain');
    await waitFor(() => f.seen.length === 1, { timeoutMs: 5_000 });
    expect(f.seen[0]).toEqual({ value: 'plain', source: 'live' });
    f.stop();
  });

  it('after a reconnect, reads back what was stored while it was away', async () => {
    // The follower reconnects only after 2 s; another client publishes in between.
    const slow = await connect({ servers: nats.url, name: 'last-value-slow', maxReconnectAttempts: -1, reconnectTimeWait: 2_000 });
    try {
      await js.publish('lv.d', 'before');
      const f = follow(slow, 'lv.d');
      await f.refresh();
      expect(f.seen).toEqual([{ value: 'before', source: 'stored' }]);
      await nats.stop();
      await nats.restart();
      const other = await connect({ servers: nats.url, name: 'last-value-publisher' });
      await jetstream(other).publish('lv.d', 'while away');
      await other.close();
      await waitFor(() => f.seen.length === 2, { timeoutMs: 10_000 });
      expect(f.seen[1]).toEqual({ value: 'while away', source: 'stored' });
      f.stop();
    } finally {
      await slow.close();
    }
  });
});

describe('followLastValues', () => {
  it('follows a stream that was deleted and created again: onReset, then its last values and new messages', async () => {
    const jsm = await jetstreamManager(nc);
    const name = 'LV_RECREATED';
    const config = { name, subjects: ['lvr.>'], max_msgs_per_subject: 1 };
    await jsm.streams.add(config);
    for (let i = 0; i < 20; i++) await js.publish(`lvr.s${i % 4}`, `old ${i}`);
    const seen: string[] = [];
    let resets = 0;
    const view = await followLastValues({
      js,
      stream: name,
      filterSubject: 'lvr.>',
      recheckMs: 100,
      onMessage: (m) => seen.push(`${m.subject}=${m.string()}@${m.seq}`),
      onReset: () => {
        resets++;
        seen.push('reset');
      },
    });
    try {
      expect(seen).toEqual(['lvr.s0=old 16@17', 'lvr.s1=old 17@18', 'lvr.s2=old 18@19', 'lvr.s3=old 19@20']);
      // Created again: its sequences start over at 1, below what the follow has seen.
      await recreateStream(jsm, name);
      await js.publish('lvr.s0', 'new 1');
      await waitFor(() => seen.includes('lvr.s0=new 1@1'), { timeoutMs: 5_000, what: 'the first message of the new stream' });
      await js.publish('lvr.s1', 'new 2');
      await waitFor(() => seen.includes('lvr.s1=new 2@2'), { timeoutMs: 5_000, what: 'a later message of the new stream' });
      expect(resets).toBe(1);
      expect(seen.slice(seen.indexOf('reset'))).toEqual(['reset', 'lvr.s0=new 1@1', 'lvr.s1=new 2@2']);
    } finally {
      await view.stop();
      await jsm.streams.delete(name);
    }
  });

  it('keeps following when the stream stays missing a while and when the reset handler throws', async () => {
    const jsm = await jetstreamManager(nc);
    const name = 'LV_MISSING';
    const config = { name, subjects: ['lvm.>'], max_msgs_per_subject: 1 };
    await jsm.streams.add(config);
    await js.publish('lvm.a', 'old');
    const seen: string[] = [];
    const { logged, logger } = recordingLogger();
    let resets = 0;
    const view = await followLastValues({
      js,
      stream: name,
      filterSubject: 'lvm.>',
      recheckMs: 100,
      logger,
      onMessage: (m) => seen.push(m.string()),
      onReset: () => {
        resets++;
        throw new Error('handler bug');
      },
    });
    try {
      await jsm.streams.delete(name);
      await waitFor(() => logged.includes('the stream is missing; following it again once it is created'), { timeoutMs: 5_000 });
      await new Promise((r) => setTimeout(r, 500)); // several checks while it is missing: one warning
      expect(logged.filter((l) => l.startsWith('the stream is missing'))).toHaveLength(1);
      await jsm.streams.add(config);
      await js.publish('lvm.a', 'new');
      await waitFor(() => seen.includes('new'), { timeoutMs: 5_000, what: 'the message of the new stream' });
      expect(resets).toBe(1);
      expect(logged).toContain('reset handler failed; following the new stream anyway');
      await js.publish('lvm.a', 'newer');
      await waitFor(() => seen.includes('newer'), { timeoutMs: 5_000, what: 'a later message' });
      expect(resets).toBe(1);
    } finally {
      await view.stop();
      await jsm.streams.delete(name).catch(() => undefined);
    }
  });
});

describe('followLastValues: the retained values', () => {
  /** A stream of its own holding `count` retained values, the last `tail` of them under `<prefix>.tail.`. */
  async function filled(name: string, prefix: string, count: number, tail = 0) {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name, subjects: [`${prefix}.>`], max_msgs_per_subject: 1 });
    for (let i = 0; i < count; i += 500)
      await Promise.all(
        Array.from({ length: 500 }, (_, j) => js.publish(i + j >= count - tail ? `${prefix}.tail.${i + j}` : `${prefix}.v.${i + j}`, 'x')),
      );
    return jsm;
  }
  /** An onMessage that takes `ms` of CPU per message: a load far slower than the load timeout. */
  const slow = (ms: number, seen: { n: number }) => () => {
    seen.n++;
    const until = performance.now() + ms;
    while (performance.now() < until);
  };

  it('goes on with part of them after the load timeout by default; with waitForAll it waits, saying so, until it has every one', async () => {
    // More than one pull's worth (4,096): nats-server is frozen as the first message arrives, so
    // the rest comes only once it is thawed, 1.5 s later, 15 load timeouts.
    const COUNT = 10_000;
    const jsm = await filled('LV_SLOW', 'lvs', COUNT);
    try {
      for (const waitForAll of [false, true]) {
        const seen = { n: 0 };
        const { logged, logger } = recordingLogger();
        let thawed: Promise<void> | undefined;
        const view = await followLastValues({
          js,
          stream: 'LV_SLOW',
          filterSubject: 'lvs.>',
          loadTimeoutMs: 100,
          waitForAll,
          logger,
          onMessage: () => {
            seen.n++;
            if (thawed) return;
            nats.freeze();
            thawed = new Promise((r) => setTimeout(r, 1_500)).then(() => nats.thaw());
          },
        });
        const atStart = seen.n;
        await thawed;
        if (waitForAll) {
          expect(atStart).toBe(COUNT);
          expect(logged).toContain('not every retained value has arrived yet; waiting for the rest before going on');
        } else {
          expect(atStart).toBeLessThan(COUNT);
          expect(logged).toContain('not every retained value arrived in time; going on with what did (the rest follows as it arrives)');
          // The rest follows.
          await waitFor(() => seen.n === COUNT, { timeoutMs: 10_000, what: 'the rest of the retained values' });
        }
        await view.stop();
      }
    } finally {
      nats.thaw();
      await jsm.streams.delete('LV_SLOW');
    }
  });

  it('counts the load as done once nothing is left, when values counted at the start were deleted meanwhile', async () => {
    // The tail starts past the first pull's worth (4,096): it is purged before it is pulled.
    const COUNT = 5_000;
    const jsm = await filled('LV_PURGED', 'lvp', COUNT, 100);
    const seen = { n: 0 };
    const burn = slow(0.3, seen);
    let purge: Promise<unknown> | undefined;
    try {
      const started = performance.now();
      const view = followLastValues({
        js,
        stream: 'LV_PURGED',
        filterSubject: 'lvp.>',
        loadTimeoutMs: 60_000,
        waitForAll: true,
        // The last 100 go while the first ones are being taken in: the 5,000 counted at the start never all arrive.
        onMessage: () => {
          purge ??= jsm.streams.purge('LV_PURGED', { filter: 'lvp.tail.>' });
          burn();
        },
      });
      const outcome = await Promise.race([view, new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 20_000))]);
      expect(outcome).not.toBe('stuck');
      if (outcome !== 'stuck') await outcome.stop();
      expect(((await purge) as { purged: number }).purged).toBe(100);
      expect(seen.n).toBe(COUNT - 100);
      // Found caught up at a check (every second), long before the 60 s load timeout.
      expect(performance.now() - started).toBeLessThan(20_000);
    } finally {
      await jsm.streams.delete('LV_PURGED');
    }
  });

  it('has every value when the ordered consumer is recreated during the load (the consumer deleted under it)', async () => {
    const COUNT = 6_000;
    const jsm = await filled('LV_RESET', 'lvr2', COUNT);
    let deleted: Promise<unknown> | undefined;
    const subjectsSeen = new Set<string>();
    try {
      const view = followLastValues({
        js,
        stream: 'LV_RESET',
        filterSubject: 'lvr2.>',
        loadTimeoutMs: 60_000,
        waitForAll: true,
        onMessage: (m) => {
          subjectsSeen.add(m.subject);
          // Late in the first pull's worth, so what the new consumer has to deliver is small.
          if (subjectsSeen.size === 4_000) deleted ??= jsm.consumers.delete('LV_RESET', m.info.consumer);
        },
      });
      const outcome = await Promise.race([view, new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 30_000))]);
      expect(outcome).not.toBe('stuck');
      if (outcome !== 'stuck') await outcome.stop();
      expect(await deleted).toBe(true);
      expect(subjectsSeen.size).toBe(COUNT);
    } finally {
      await jsm.streams.delete('LV_RESET');
    }
  });

  it('stops a load that cannot finish when its signal is aborted', async () => {
    const jsm = await filled('LV_ABORT', 'lva', 10_000);
    const ending = new AbortController();
    let seen = 0;
    try {
      const view = followLastValues({
        js,
        stream: 'LV_ABORT',
        filterSubject: 'lva.>',
        waitForAll: true,
        signal: ending.signal,
        onMessage: () => {
          if (seen++ === 0) {
            nats.freeze();
            setTimeout(() => ending.abort(), 300);
          }
        },
      });
      const outcome = await Promise.race([view, new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 5_000))]);
      expect(outcome).not.toBe('stuck');
      expect(seen).toBeLessThan(10_000);
    } finally {
      nats.thaw();
      await jsm.streams.delete('LV_ABORT');
    }
  });
});

describe('followLastValues of the stream’s owner (provision)', () => {
  it('creates its stream again when it is found deleted, with the mesh configuration, then resets and follows it', async () => {
    const jsm = await jetstreamManager(nc);
    expect(await createMeshStream(jsm, streams.proxy)).toBe(true);
    await js.publish(subjects.proxyConfig('a'), 'old');
    const seen: string[] = [];
    const { logged, logger } = recordingLogger();
    let resets = 0;
    const view = await followLastValues({
      js,
      stream: streams.proxy,
      filterSubject: subjects.proxyConfigAll,
      recheckMs: 100,
      provision: {},
      logger,
      onMessage: (m) => seen.push(m.string()),
      onReset: () => {
        resets++;
      },
    });
    try {
      expect(seen).toEqual(['old']);
      const before = (await jsm.streams.info(streams.proxy)).created;
      await jsm.streams.delete(streams.proxy);
      await waitFor(() => resets === 1, { timeoutMs: 5_000, what: 'the reset after the stream was created again' });
      const info = await jsm.streams.info(streams.proxy);
      expect(info.created).not.toBe(before);
      const want = proxyStream();
      expect(info.config).toMatchObject({
        subjects: want.subjects,
        storage: want.storage,
        max_msgs_per_subject: 1,
        duplicate_window: want.duplicate_window,
        num_replicas: 1,
      });
      expect(logged).toContain('the stream was missing; created it again');
      expect(logged.some((l) => l.startsWith('the stream is missing; following it again'))).toBe(false);
      await js.publish(subjects.proxyConfig('a'), 'new');
      await waitFor(() => seen.includes('new'), { timeoutMs: 5_000, what: 'a message of the new stream' });
      expect(seen).toEqual(['old', 'new']);
      expect(resets).toBe(1);
    } finally {
      await view.stop();
      await jsm.streams.delete(streams.proxy).catch(() => undefined);
    }
  });

  it('creates a mesh stream only where none exists: one that someone created with another configuration is left as it is', async () => {
    const jsm = await jetstreamManager(nc);
    await expect(createMeshStream(jsm, 'NOT_A_MESH_STREAM')).rejects.toThrow('NOT_A_MESH_STREAM is not a stream of the mesh');
    // An operator's stream of that name, made between the check that found it missing and this call.
    await jsm.streams.add({ ...proxyStream(), max_msgs_per_subject: 5 });
    try {
      expect(await createMeshStream(jsm, streams.proxy)).toBe(false);
      expect((await jsm.streams.info(streams.proxy)).config.max_msgs_per_subject).toBe(5);
      await jsm.streams.delete(streams.proxy);
      expect(await createMeshStream(jsm, streams.proxy)).toBe(true);
      // Another replica creating it with the same configuration at the same moment: both succeed.
      expect(await createMeshStream(jsm, streams.proxy)).toBe(true);
      expect((await jsm.streams.info(streams.proxy)).config.max_msgs_per_subject).toBe(1);
    } finally {
      await jsm.streams.delete(streams.proxy).catch(() => undefined);
    }
  });
});

describe('lastValues (SDK watchers)', () => {
  it('yields the retained value, then changes, also after the stream was deleted and created again; ends on abort', async () => {
    const jsm = await jetstreamManager(nc);
    const name = 'LV_WATCH';
    await jsm.streams.add({ name, subjects: ['lvw.>'], max_msgs_per_subject: 1 });
    await js.publish('lvw.a', JSON.stringify({ n: 1 }));
    const abort = new AbortController();
    const seen: number[] = [];
    const watching = (async () => {
      for await (const v of lastValues<{ n: number }>(js, name, 'lvw.a', abort.signal, { recheckMs: 100 })) seen.push(v.n);
    })();
    try {
      await waitFor(() => seen.includes(1), { timeoutMs: 5_000, what: 'the retained value' });
      await js.publish('lvw.a', JSON.stringify({ n: 2 }));
      await waitFor(() => seen.includes(2), { timeoutMs: 5_000, what: 'a change' });
      await recreateStream(jsm, name);
      await js.publish('lvw.a', JSON.stringify({ n: 3 }));
      await waitFor(() => seen.includes(3), { timeoutMs: 5_000, what: 'a value of the new stream' });
      expect(seen).toEqual([1, 2, 3]);
    } finally {
      abort.abort();
      await watching;
      await jsm.streams.delete(name);
    }
  });

  it('skips a message that is not JSON, keeps only the newest value of a subject the caller has not taken, and ends when the connection closes', async () => {
    const jsm = await jetstreamManager(nc);
    const name = 'LV_WATCH_END';
    await jsm.streams.add({ name, subjects: ['lve.>'] });
    const own = await connect({ servers: nats.url });
    const seen: unknown[] = [];
    let finished = false;
    try {
      const values = lastValues<{ n: number }>(jetstream(own), name, 'lve.>');
      await js.publish('lve.a', 'not json');
      await js.publish('lve.b', JSON.stringify({ n: 1 }));
      await js.publish('lve.b', JSON.stringify({ n: 2 }));
      await js.publish('lve.c', JSON.stringify({ n: 3 }));
      await new Promise((r) => setTimeout(r, 300)); // all delivered before the caller takes any
      const watching = (async () => {
        for await (const v of values) seen.push(v.n);
        finished = true;
      })();
      await waitFor(() => seen.includes(3), { timeoutMs: 5_000, what: 'the values' });
      expect(seen).toEqual([2, 3]);
      await own.close();
      await waitFor(() => finished, { timeoutMs: 5_000, what: 'the watch to end with its connection' });
      await watching;
    } finally {
      if (!own.isClosed()) await own.close();
      await jsm.streams.delete(name);
    }
  });

  it('resets once for each new stream, however often the stream is created again', async () => {
    const jsm = await jetstreamManager(nc);
    const name = 'LV_TWICE';
    await jsm.streams.add({ name, subjects: ['lvt.>'], max_msgs_per_subject: 1 });
    let resets = 0;
    const seen: string[] = [];
    const view = await followLastValues({
      js,
      stream: name,
      filterSubject: 'lvt.>',
      recheckMs: 100,
      onMessage: (m) => seen.push(m.string()),
      onReset: () => resets++,
    });
    try {
      for (const round of [1, 2]) {
        await recreateStream(jsm, name);
        await js.publish('lvt.a', `round ${round}`);
        await waitFor(() => seen.includes(`round ${round}`), { timeoutMs: 5_000, what: `round ${round}` });
        expect(resets).toBe(round);
      }
      await new Promise((r) => setTimeout(r, 400)); // several more checks: no spurious reset
      expect(resets).toBe(2);
    } finally {
      await view.stop();
      await jsm.streams.delete(name);
    }
  });
});
