import { DeliverPolicy, type JetStreamClient, type JetStreamManager, jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { provisionProxyConfig } from '@novamesh/bus';
import { ProxySnapshotV1, streams, subjects } from '@novamesh/contracts';
import { createLogger } from '@novamesh/observability';
import { type CompiledSnapshot, compileSnapshot, endpointSetFixture } from '@novamesh/proxy-config';
import { TestNats, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PublishedSnapshotsService } from './published-snapshots.service';

// The conditional publish between replicas, made deterministic: replica B is a publisher that
// does not follow the stream, so it always writes from a stale view — the case two live
// replicas only hit when they race with different views.

let nats: TestNats;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const logger = createLogger({ service: 'proxy-config-test', instance: 't', level: 'silent' });

/** Snapshot content of `web` (calling only itself) with `count` endpoints: different counts, different hashes. */
function content(count: number): CompiledSnapshot {
  const web = endpointSetFixture('web', { upstreams: ['web'], count });
  return compileSnapshot({ service: 'web', endpoints: new Map([['web', web]]), policies: new Map() });
}

async function allStored(): Promise<ProxySnapshotV1[]> {
  const consumer = await js.consumers.get(streams.proxy, {
    filter_subjects: subjects.proxyConfig('web'),
    deliver_policy: DeliverPolicy.All,
  });
  const pending = (await consumer.info(true)).num_pending;
  const out: ProxySnapshotV1[] = [];
  if (pending === 0) return out;
  for await (const m of await consumer.fetch({ max_messages: pending, expires: 2_000 })) out.push(ProxySnapshotV1.parse(m.json()));
  return out;
}

beforeAll(async () => {
  nats = await TestNats.start();
  nc = await connect({ servers: nats.url });
  ({ jsm } = await provisionProxyConfig(nc));
  js = jetstream(nc);
  // Keep every snapshot, to audit the version sequence.
  const info = await jsm.streams.info(streams.proxy);
  await jsm.streams.update(streams.proxy, { ...info.config, max_msgs_per_subject: -1 });
});

afterAll(async () => {
  await nc?.close();
  await nats?.dispose();
});

describe('PublishedSnapshotsService (two replicas, real JetStream)', () => {
  it('a replica that lost the race re-reads the subject and publishes the next version only if its content differs', async () => {
    const a = new PublishedSnapshotsService(js, jsm, logger);
    await a.start();
    const b = new PublishedSnapshotsService(js, jsm, logger);

    expect(await a.publish(content(1))).toEqual({ published: true, version: 1 });
    // b believes nothing is stored: its publish expects "no message", fails, re-reads v1, differs → v2.
    expect(await b.publish(content(2))).toEqual({ published: true, version: 2 });
    await waitFor(() => a.lastHash('web') === content(2).hash, { what: 'a to see v2' });
    expect(await a.publish(content(3))).toEqual({ published: true, version: 3 });
    // b still thinks v2 is the last: same content as a's v3 → not stored twice.
    expect(await b.publish(content(3))).toEqual({ published: false, reason: 'published-by-another-replica' });
    expect(await b.publish(content(3))).toEqual({ published: false, reason: 'unchanged' });

    // Both at once, different contents: one wins each version, the other takes the next one.
    for (let i = 0; i < 5; i++) {
      const results = await Promise.all([a.publish(content(10 + i)), b.publish(content(20 + i))]);
      expect(results.every((r) => r.published)).toBe(true);
    }
    const stored = await allStored();
    expect(stored.map((s) => s.version)).toEqual(Array.from({ length: 13 }, (_, i) => i + 1));
    for (const s of stored) expect(s.hash).toMatch(/^[0-9a-f]{64}$/);
    await a.stop();
  });

  it('keeps counting up after the subject was purged: no version is reused', async () => {
    const a = new PublishedSnapshotsService(js, jsm, logger);
    await a.start();
    await waitFor(() => a.lastHash('web') !== undefined, { what: 'a to load web' });
    const before = (await allStored()).at(-1)?.version ?? 0;
    await jsm.streams.purge(streams.proxy, { filter: subjects.proxyConfig('web') });
    expect(await a.publish(content(99))).toEqual({ published: true, version: before + 1 });
    await a.stop();
  });
});
