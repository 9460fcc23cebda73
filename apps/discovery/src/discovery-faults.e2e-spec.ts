import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { allMeshStreams } from '@novamesh/bus';
import { buckets, consumers, type EndpointSetV1, streams, subjects, validService } from '@novamesh/contracts';
import { MeshManager } from '@novamesh/sdk';
import { type ManagedProcess, recreateStream, startDiscovery, TestNats, TestRedis, waitFor } from '@novamesh/testing';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

let nats: TestNats;
let redis: TestRedis;
let nc: NatsConnection;
let mesh: MeshManager;
const replicas: ManagedProcess[] = [];

const start = async (instance: string, env: Record<string, string> = {}) => {
  const p = await startDiscovery({
    natsUrl: nats.url,
    redisUrl: redis.url,
    instance,
    env: { DISCOVERY_SWEEP_INTERVAL: '200ms', DISCOVERY_MEMBER_TTL: '1s', ...env },
  });
  replicas.push(p);
  return p;
};

beforeAll(async () => {
  [nats, redis] = await Promise.all([TestNats.start(), TestRedis.start()]);
  await start('boot'); // provisions streams
  nc = await connect({ servers: nats.url });
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 10_000 });
  await mesh.initialize();
  await replicas.pop()?.stop();
});

afterEach(async () => {
  await Promise.all(replicas.splice(0).map((p) => p.stop('SIGKILL')));
});

afterAll(async () => {
  await mesh?.close();
  await nc?.close();
  await Promise.all([nats?.dispose(), redis?.dispose()]);
});

async function kvEntries(prefix: string): Promise<Map<string, { endpoints: Record<string, unknown> }>> {
  const kv = await new Kvm(nc).open(buckets.services);
  const out = new Map<string, { endpoints: Record<string, unknown> }>();
  for await (const k of await kv.keys()) {
    if (!k.startsWith(prefix)) continue;
    const e = await kv.get(k);
    if (e?.operation === 'PUT') out.set(k, e.json());
  }
  return out;
}

describe('discovery killed mid-ingest', () => {
  it('ends with all 1,000 registrations, none lost or duplicated', async () => {
    const d1 = await start('d1');
    const js = jetstream(nc);
    const applied = new Set<string>();
    const sub = nc.subscribe(subjects.endpointsAll, {
      callback: (_e, m) => {
        applied.add(m.json<EndpointSetV1>().service);
      },
    });
    const N = 1000;
    const publishing = (async () => {
      for (let i = 0; i < N; i += 50) {
        await Promise.all(
          Array.from({ length: 50 }, (_, j) => {
            const n = i + j;
            const svc = {
              name: `bulk-${n}`,
              type: 'http',
              port: 80,
              endpoints: [{ id: `e${n}`, address: `10.1.${n >> 8}.${n & 255}`, port: 8000 + (n % 1000) }],
            };
            return js.publish(`mesh.v1.registry.bulk-${n}.register`, JSON.stringify(svc), { msgID: `bulk-${n}` });
          }),
        );
      }
    })();
    await waitFor(() => applied.size >= 200, { timeoutMs: 30_000, what: '200 registrations applied' });
    d1.kill('SIGKILL');
    await d1.exited;
    const appliedAtKill = applied.size;
    await publishing;
    expect(appliedAtKill).toBeLessThan(N); // the kill really was part-way
    await start('d1-restarted');
    await waitFor(async () => (await kvEntries('bulk-')).size === N, { timeoutMs: 60_000, what: 'all 1,000 services stored' });
    const stored = await kvEntries('bulk-');
    for (let n = 0; n < N; n++) expect(Object.keys(stored.get(`bulk-${n}`)?.endpoints ?? {})).toEqual([`e${n}`]);
    const listed = await waitFor(async () => {
      const all = (await mesh.listServices()).filter((s) => s.service.startsWith('bulk-'));
      return all.length === N ? all : undefined;
    });
    expect(new Set(listed.map((s) => s.service)).size).toBe(N);
    const info = await (await jetstreamManager(nc)).consumers.info(streams.registry, consumers.discoveryRegistry);
    await waitFor(async () => {
      const i = await (await jetstreamManager(nc)).consumers.info(streams.registry, consumers.discoveryRegistry);
      return i.num_pending === 0 && i.num_ack_pending === 0;
    });
    expect(info.config.max_deliver).toBe(5);
    sub.unsubscribe();
  });
});

describe('Redis outage', () => {
  it('keeps the registry readable and writable, and health checks resume after Redis returns', async () => {
    await start('d1');
    let status = 200;
    const srv: Server = createServer((_req, res) => {
      res.statusCode = status;
      res.end();
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const port = (srv.address() as { port: number }).port;
    try {
      await mesh.registerService(
        {
          name: 'redisdown',
          type: 'http',
          port: 80,
          endpoints: [{ id: 'r1', address: '127.0.0.1', port }],
          healthCheck: { protocol: 'http', path: '/', interval: '200ms', timeout: '100ms', unhealthyThreshold: 2 },
        },
        { wait: true },
      );
      await redis.stop();
      // reads and writes of the registry do not need Redis
      expect((await mesh.getService('redisdown')).endpoints[0]?.status).toBe('healthy');
      await mesh.registerService(
        { name: 'during-outage', type: 'tcp', port: 5432, endpoints: [{ id: 'p1', address: '10.0.0.5', port: 5432 }] },
        { wait: true },
      );
      expect((await mesh.getService('during-outage')).endpoints).toHaveLength(1);
      // a failing endpoint is not (and cannot be) judged while Redis is down: no flapping, no crash
      status = 503;
      await new Promise((r) => setTimeout(r, 1000));
      expect((await mesh.getService('redisdown')).endpoints[0]?.status).toBe('healthy');
      await redis.restart();
      await waitFor(async () => (await mesh.getService('redisdown')).endpoints[0]?.reason === 'check-failed: HTTP 503', {
        timeoutMs: 15_000,
        what: 'health checks to resume and mark r1 unhealthy',
      });
      expect(replicas[0]?.running).toBe(true);
    } finally {
      srv.close();
    }
  });
});

describe('two discovery replicas', () => {
  it('check each endpoint once per interval between them, and one takes over when the other dies', async () => {
    const hits = new Map<string, number>();
    const servers: Server[] = [];
    const endpoints: { id: string; address: string; port: number }[] = [];
    for (let i = 0; i < 8; i++) {
      const id = `hc${i}`;
      const s = createServer((_req, res) => {
        hits.set(id, (hits.get(id) ?? 0) + 1);
        res.end('ok');
      });
      s.listen(0, '127.0.0.1');
      await once(s, 'listening');
      servers.push(s);
      endpoints.push({ id, address: '127.0.0.1', port: (s.address() as { port: number }).port });
    }
    const r = new Redis(redis.url);
    try {
      const d1 = await start('d1');
      await start('d2');
      await mesh.registerService(
        {
          name: 'shared',
          type: 'http',
          port: 80,
          endpoints,
          healthCheck: { protocol: 'http', path: '/', interval: '300ms', timeout: '200ms' },
        },
        { wait: true },
      );
      const window = async () => {
        await new Promise((res) => setTimeout(res, 1000)); // settle
        hits.clear();
        await new Promise((res) => setTimeout(res, 3000)); // 10 intervals
        return endpoints.map((e) => hits.get(e.id) ?? 0);
      };
      const together = await window();
      for (const n of together) expect(n >= 8 && n <= 12, `checks per endpoint in 10 intervals: ${together}`).toBe(true);
      const checkers = new Set(Object.values(await r.hgetall('mesh:health:{shared}')).map((v) => JSON.parse(v).by));
      expect(checkers).toEqual(new Set(['d1', 'd2'])); // the work is shared

      d1.kill('SIGKILL');
      await d1.exited;
      const after = await window(); // within a few intervals d2 owns every endpoint
      for (const n of after) expect(n >= 8 && n <= 12, `checks per endpoint in 10 intervals after takeover: ${after}`).toBe(true);
      const byNow = new Set(Object.values(await r.hgetall('mesh:health:{shared}')).map((v) => JSON.parse(v).by));
      expect(byNow).toEqual(new Set(['d2']));
    } finally {
      r.disconnect();
      for (const s of servers) s.close();
    }
  });
});

/** The endpoint set of `name` stored in MESH_ENDPOINTS. */
async function storedSet(name: string): Promise<EndpointSetV1 | undefined> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.getMessage(streams.endpoints, { last_by_subj: subjects.endpoints(name) }))?.json<EndpointSetV1>();
}

/**
 * Waits until every one of `names` has a set in MESH_ENDPOINTS; resolves with them. A timeout says
 * what the discovery replicas logged last.
 */
function allStored(names: string[], what: string): Promise<(EndpointSetV1 | undefined)[]> {
  return waitFor(
    async () => {
      const sets = await Promise.all(names.map((n) => storedSet(n).catch(() => undefined)));
      return sets.every((x) => x !== undefined) ? sets : undefined;
    },
    { timeoutMs: 10_000, what },
  ).catch((e: Error) => {
    throw new Error(
      `${e.message}; the discovery replicas logged last:\n${replicas.map((r) => r.output.slice(-30).join('\n')).join('\n---\n')}`,
    );
  });
}

/**
 * Queries `service` every 20 ms until `stop()`, which resolves with how many endpoints each answer
 * had, or rejects with the first query that failed (refused or unanswered).
 */
function pollEndpoints(service: string): { stop(): Promise<number[]> } {
  let polling = true;
  const answers: number[] = [];
  let failed: unknown;
  const poll = (async () => {
    while (polling && failed === undefined) {
      await mesh.getService(service).then(
        (s) => answers.push(s.endpoints.length),
        (e: unknown) => {
          failed = e;
        },
      );
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    stop: async () => {
      polling = false;
      await poll;
      if (failed !== undefined) throw failed;
      return answers;
    },
  };
}

describe('endpoints stream deleted and created again', () => {
  it('republishes every registered set to the new stream, and queries answer from it again', async () => {
    await start('d1', { DISCOVERY_STREAM_RECHECK: '300ms' });
    const names = ['recreated-a', 'recreated-b'];
    // No health checks and no heartbeats: nothing about these services changes by itself, so only
    // the reset can put their sets into the new stream.
    for (const name of names) await mesh.registerService({ ...validService(name), healthCheck: undefined }, { wait: true });
    const jsm = await jetstreamManager(nc);
    const before = await Promise.all(names.map(storedSet));
    // A set in the stream that the registry does not have (published by hand, as discovery publishes,
    // with its message id): after the reset nobody republishes it, so it must stop answering queries
    // instead of lingering on this replica.
    const ghost = { ...before[0], service: 'ghost' };
    await jetstream(nc).publish(subjects.endpoints('ghost'), JSON.stringify(ghost), { msgID: `ghost:${ghost.revision}` });
    await waitFor(async () => (await mesh.getService('ghost').catch(() => undefined)) !== undefined, { what: 'the hand-made set' });

    // An operator deletes the stream and it is created again (or nats-server lost its stream but
    // not the registry): the new stream holds no set, and nothing about the services changed.
    // Queries keep answering while the sets are republished (polled every 20 ms meanwhile).
    const poll = pollEndpoints('recreated-a');
    await recreateStream(jsm, streams.endpoints);

    const after = await allStored(names, 'both endpoint sets in the new stream');
    const answers = await poll.stop(); // a query refused meanwhile (not found) fails the test here
    expect(answers.length).toBeGreaterThan(5);
    expect(new Set(answers)).toEqual(new Set([2]));
    for (const [i, set] of after.entries()) {
      expect(set?.service).toBe(names[i]);
      // Republished as a new revision of the same registration (revisions are the registry's KV sequence).
      expect(set?.revision).toBeGreaterThan(before[i]?.revision ?? Number.POSITIVE_INFINITY);
      expect(set?.endpoints).toEqual(before[i]?.endpoints);
    }
    expect((await mesh.getService('recreated-a')).endpoints).toHaveLength(2);
    expect((await mesh.listServices()).map((s) => s.service)).toEqual(expect.arrayContaining(names));
    await waitFor(async () => (await mesh.getService('ghost').catch((e: { code?: string }) => e.code)) === 'MESH_NOT_FOUND', {
      what: 'the hand-made set to be forgotten',
    });
  });

  it('creates the stream again when it was deleted and nobody created it, then republishes every registered set into it', async () => {
    await start('d1', { DISCOVERY_STREAM_RECHECK: '300ms' });
    const names = ['deleted-a', 'deleted-b'];
    for (const name of names) await mesh.registerService({ ...validService(name), healthCheck: undefined }, { wait: true });
    const jsm = await jetstreamManager(nc);
    const before = await Promise.all(names.map(storedSet));
    const { config, created } = await jsm.streams.info(streams.endpoints);

    // Deleted and left deleted (an operator's mistake, or nats-server lost it): discovery, which
    // publishes into it, creates it again with the mesh's configuration.
    const poll = pollEndpoints('deleted-a');
    await jsm.streams.delete(streams.endpoints);
    const after = await allStored(names, 'both endpoint sets in the stream discovery created again');
    const answers = await poll.stop();
    expect(answers.length).toBeGreaterThan(5);
    expect(new Set(answers)).toEqual(new Set([2]));
    const info = await jsm.streams.info(streams.endpoints);
    expect(info.created).not.toBe(created);
    // The mesh's configuration for the stream, as provisioned (the same as before it was deleted).
    const want = allMeshStreams().find((c) => c.name === streams.endpoints);
    expect(info.config).toMatchObject({
      subjects: want?.subjects,
      storage: want?.storage,
      retention: want?.retention,
      max_msgs_per_subject: 1,
      duplicate_window: want?.duplicate_window,
    });
    expect(info.config).toMatchObject({
      subjects: config.subjects,
      storage: config.storage,
      max_msgs_per_subject: config.max_msgs_per_subject,
    });
    for (const [i, set] of after.entries()) expect(set?.endpoints).toEqual(before[i]?.endpoints);
    expect((await mesh.getService('deleted-b')).endpoints).toHaveLength(2);
  });
});

describe('an endpoint set overwritten by a stray publish', () => {
  it('republishes the registered set at once (not at the next periodic reconcile), for every reader of the stream', async () => {
    // The periodic reconcile is far away: only noticing the stray message can republish in time.
    await start('d1', { DISCOVERY_RECONCILE_INTERVAL: '10m' });
    const name = 'overwritten';
    await mesh.registerService({ ...validService(name), healthCheck: undefined }, { wait: true });
    const before = await storedSet(name);
    const js = jetstream(nc);
    for (const stray of [
      'not json',
      JSON.stringify({ service: name, endpoints: 'none' }),
      JSON.stringify({ ...before, service: 'other' }),
      // Well-formed, of the right service, at a later revision, but not published by discovery (no message id).
      JSON.stringify({ ...before, revision: (before?.revision ?? 0) + 100, endpoints: [] }),
    ]) {
      await js.publish(subjects.endpoints(name), stray);
      const repaired = await waitFor(
        async () => {
          const set = await storedSet(name).catch(() => undefined);
          return set?.service === name && Array.isArray(set.endpoints) && set.endpoints.length > 0 ? set : undefined;
        },
        { timeoutMs: 5_000, what: `the registered set published over ${stray.slice(0, 30)}` },
      );
      expect(repaired.endpoints).toEqual(before?.endpoints);
      expect((await mesh.getService(name)).endpoints).toHaveLength(2);
    }
  });
});
