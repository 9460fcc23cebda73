import { DeliverPolicy, type JetStreamClient, type JetStreamManager, jetstream } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { provisionProxyConfig } from '@novamesh/bus';
import { ProxySnapshotV1, streams, subjects } from '@novamesh/contracts';
import { createLogger } from '@novamesh/observability';
import { type CompiledSnapshot, compileSnapshot, endpointSetFixture } from '@novamesh/proxy-config';
import { recreateStream, TestNats, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PublishedSnapshotsService, SnapshotTooLargeError } from './published-snapshots.service';

// The conditional publish between replicas, against a real nats-server: two replicas that both
// follow the stream, publishing different contents for the same service in the same turn, so both
// expect the same last sequence and one of them must lose and take the next version.

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
  it('replicas racing for a version each store theirs under a different version; equal content is stored once', async () => {
    const a = new PublishedSnapshotsService(js, jsm, nc, logger);
    const b = new PublishedSnapshotsService(js, jsm, nc, logger);
    await a.start();
    await b.start();

    expect(await a.publish(content(1))).toEqual({ published: true, version: 1 });
    await waitFor(() => b.lastHash('web') === content(1).hash, { what: 'b to see v1' });
    expect(await b.publish(content(1))).toEqual({ published: false, reason: 'unchanged' });

    // Both at once, different contents, both expecting v1's sequence: the stream stores one, the
    // other is superseded, learns the winner from its follow and publishes the next version.
    for (let i = 0; i < 5; i++) {
      const results = await Promise.all([a.publish(content(10 + i)), b.publish(content(20 + i))]);
      expect(results.every((r) => r.published)).toBe(true);
      expect(results.map((r) => (r.published ? r.version : 0)).sort()).toEqual([2 + 2 * i, 3 + 2 * i]);
    }
    // Both at once, the same content: one message id, stored once, confirmed to both.
    const same = await Promise.all([a.publish(content(30)), b.publish(content(30))]);
    expect(same).toEqual([
      { published: true, version: 12 },
      { published: true, version: 12 },
    ]);
    await waitFor(() => a.lastHash('web') === content(30).hash && b.lastHash('web') === content(30).hash, { what: 'both to see v12' });
    expect(await b.publish(content(30))).toEqual({ published: false, reason: 'unchanged' });

    const stored = await allStored();
    expect(stored.map((s) => s.version)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(stored.at(-1)?.hash).toBe(content(30).hash);
    for (const s of stored) expect(s.hash).toMatch(/^[0-9a-f]{64}$/);
    await a.stop();
    await b.stop();
  });

  it('keeps counting up after the subject was purged: the publication expecting the purged one times out, the retry takes the next version', async () => {
    const a = new PublishedSnapshotsService(js, jsm, nc, logger, { confirmTimeoutMs: 500 });
    await a.start();
    await waitFor(() => a.lastHash('web') !== undefined, { what: 'a to load web' });
    const before = (await allStored()).at(-1)?.version ?? 0;
    await jsm.streams.purge(streams.proxy, { filter: subjects.proxyConfig('web') });
    await expect(a.publish(content(99))).rejects.toThrow(/not seen in stream MESH_PROXY within 500ms/);
    expect(await a.publish(content(99))).toEqual({ published: true, version: before + 1 });
    expect((await allStored()).map((s) => s.version)).toEqual([before + 1]);
    await a.stop();
  });
});

describe('PublishedSnapshotsService (MESH_PROXY deleted and created again)', () => {
  it('notices the new stream, asks for every snapshot again and keeps counting versions up', async () => {
    const a = new PublishedSnapshotsService(js, jsm, nc, logger, { streamRecheckMs: 200 });
    let resets = 0;
    a.onReset(() => resets++);
    await a.start();
    await waitFor(() => a.lastHash('web') !== undefined, { what: 'a to load web' });
    const before = (await allStored()).at(-1)?.version ?? 0;
    await recreateStream(jsm, streams.proxy);
    await waitFor(() => resets === 1, { timeoutMs: 5_000, what: 'a to notice MESH_PROXY was created again' });
    // The content it held is gone: the same content is published again, under the next version.
    expect(a.lastHash('web')).toBe('');
    const started = performance.now();
    expect(await a.publish(content(99))).toEqual({ published: true, version: before + 1 });
    expect(performance.now() - started).toBeLessThan(1_000); // confirmed by the follow, not timed out
    expect((await allStored()).map((s) => s.version)).toEqual([before + 1]);
    await a.stop();
  });
});

describe('PublishedSnapshotsService (MESH_PROXY deleted and not created again)', () => {
  it('creates the stream again with the mesh configuration, asks for every snapshot again and keeps counting versions up', async () => {
    const a = new PublishedSnapshotsService(js, jsm, nc, logger, { streamRecheckMs: 200 });
    let resets = 0;
    a.onReset(() => resets++);
    await a.start();
    const kept = (await jsm.streams.info(streams.proxy)).config;
    try {
      await a.publish(content(7));
      await waitFor(() => a.lastHash('web') !== undefined, { what: 'a to load web' });
      const before = (await allStored()).at(-1)?.version ?? 0;
      await jsm.streams.delete(streams.proxy);
      await waitFor(() => resets === 1, { timeoutMs: 5_000, what: 'a to create MESH_PROXY again' });
      const info = await jsm.streams.info(streams.proxy);
      expect(info.config).toMatchObject({ subjects: [subjects.proxyConfigAll], max_msgs_per_subject: 1, num_replicas: 1 });
      expect(a.lastHash('web')).toBe('');
      expect(await a.publish(content(7))).toEqual({ published: true, version: before + 1 });
      expect((await allStored()).map((s) => s.version)).toEqual([before + 1]);
    } finally {
      await a.stop();
      // Back to keeping every snapshot, as the other tests expect.
      await jsm.streams.update(streams.proxy, kept).catch(() => undefined);
    }
  });
});

describe('PublishedSnapshotsService (a NATS server with a small max_payload)', () => {
  it('refuses a snapshot over max_payload at once with the sizes and what to do, and still publishes smaller ones', async () => {
    const small = await TestNats.start({ config: 'max_payload: 16384\n' });
    const conn = await connect({ servers: small.url });
    try {
      const { jsm: m } = await provisionProxyConfig(conn);
      const service = new PublishedSnapshotsService(jetstream(conn), m, conn, logger);
      await service.start();
      const big = content(200);
      const started = performance.now();
      const refused = await service.publish(big).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(SnapshotTooLargeError);
      expect(performance.now() - started).toBeLessThan(1_000); // not the 5 s confirm timeout
      const err = refused as SnapshotTooLargeError;
      expect(err.bytes).toBeGreaterThan(16_384);
      expect(err.maxPayload).toBe(16_384);
      expect(err.message).toMatch(
        /the snapshot of web is \d+ bytes, which with its headers exceeds the NATS server's max_payload of 16384 bytes/,
      );
      expect(err.message).toMatch(/declare the upstreams it calls/);
      expect(await service.publish(content(2))).toEqual({ published: true, version: 1 });
      await service.stop();
    } finally {
      await conn.close();
      await small.dispose();
    }
  });
});
