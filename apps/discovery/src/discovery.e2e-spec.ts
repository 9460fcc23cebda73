import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { buckets, type DeadLetterV1, type EndpointSetV1, MALFORMED_REGISTRY_EVENTS, streams, validService } from '@novamesh/contracts';
import { MeshManager } from '@novamesh/sdk';
import { type ManagedProcess, startDiscovery, TestNats, TestRedis, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let nats: TestNats;
let redis: TestRedis;
let discovery: ManagedProcess;
let nc: NatsConnection;
let mesh: MeshManager;

beforeAll(async () => {
  [nats, redis] = await Promise.all([TestNats.start(), TestRedis.start()]);
  discovery = await startDiscovery({ natsUrl: nats.url, redisUrl: redis.url, instance: 'd1', env: { DISCOVERY_SWEEP_INTERVAL: '100ms' } });
  nc = await connect({ servers: nats.url });
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 10_000 });
  await mesh.initialize();
});

afterAll(async () => {
  await mesh?.close();
  await nc?.close();
  await discovery?.stop();
  await Promise.all([nats?.dispose(), redis?.dispose()]);
});

async function storedKeys(): Promise<string[]> {
  const kv = await new Kvm(nc).open(buckets.services);
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  return keys.sort();
}

async function deadLetters(): Promise<DeadLetterV1[]> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(streams.deadLetter);
  const out: DeadLetterV1[] = [];
  for (let seq = info.state.first_seq; info.state.messages > 0 && seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(streams.deadLetter, { seq }).catch(() => null);
    if (m) out.push(m.json<DeadLetterV1>());
  }
  return out;
}

/** Collects endpoint sets of a service as a watcher sees them. */
function watch(name: string) {
  const seen: EndpointSetV1[] = [];
  const abort = new AbortController();
  void (async () => {
    for await (const s of mesh.watchEndpoints(name, { signal: abort.signal })) seen.push(s);
  })();
  return { seen, stop: () => abort.abort(), last: () => seen[seen.length - 1] };
}

describe('malformed registry events', () => {
  it('are each dead-lettered with a structured reason, store nothing, and discovery keeps running', async () => {
    const js = jetstream(nc);
    const ids = new Map<string, (typeof MALFORMED_REGISTRY_EVENTS)[number]>();
    for (const [i, c] of MALFORMED_REGISTRY_EVENTS.entries()) {
      const data =
        c.payload instanceof Uint8Array
          ? c.payload
          : new TextEncoder().encode(typeof c.payload === 'string' ? c.payload : JSON.stringify(c.payload));
      const msgId = `malformed-${i}`;
      ids.set(msgId, c);
      await js.publish(c.subject, data, { msgID: msgId });
    }
    const dls = await waitFor(
      async () => {
        const d = (await deadLetters()).filter((x) => x.msgId?.startsWith('malformed-'));
        return d.length >= ids.size ? d : undefined;
      },
      { timeoutMs: 30_000, what: `${ids.size} dead letters` },
    );
    expect(dls).toHaveLength(ids.size);
    for (const dl of dls) {
      const c = ids.get(dl.msgId as string);
      expect(c, dl.msgId).toBeDefined();
      if (!c) continue;
      expect(dl.error.code, c.name).toBe(c.code);
      expect(dl.error.message.length, c.name).toBeGreaterThan(10);
      if (c.path !== undefined)
        expect(
          dl.error.issues.map((i) => i.path),
          c.name,
        ).toContain(c.path);
      expect(dl.subject).toBe(c.subject);
      expect(dl.deliveryCount, `${c.name} is refused on first delivery, not retried`).toBe(1);
    }
    expect(await storedKeys()).toEqual([]);
    expect(discovery.running).toBe(true);
    // …and it still serves valid work
    await mesh.registerService(validService('after-bad-input'), { wait: true });
    expect((await mesh.getService('after-bad-input')).endpoints).toHaveLength(2);
  });

  it('says so when an event has nothing to undo (deregister or endpoint.remove of what is not registered), instead of dropping it without a word', async () => {
    const js = jetstream(nc);
    await mesh.registerService(validService('says-so'), { wait: true });
    await js.publish('mesh.v1.registry.never-registered.deregister', JSON.stringify({ name: 'never-registered', drain: '0s' }));
    await js.publish(
      'mesh.v1.registry.never-registered.endpoint.remove',
      JSON.stringify({ service: 'never-registered', endpointId: 'e1', drain: 0 }),
    );
    await js.publish('mesh.v1.registry.says-so.endpoint.remove', JSON.stringify({ service: 'says-so', endpointId: 'ghost', drain: 0 }));
    const lines = await waitFor(
      () => {
        const out = discovery.output.filter((l) => l.includes('nothing to do') || l.includes('its removal is recorded'));
        return out.length >= 3 ? out : undefined;
      },
      { timeoutMs: 10_000, what: 'three log lines' },
    );
    expect(lines.join('\n')).toMatch(
      /"meshService":"never-registered".*"msg":"deregister of a service that is not registered \(never, or no longer\): nothing to do"/,
    );
    expect(lines.join('\n')).toMatch(
      /"meshService":"never-registered".*"endpoint":"e1".*"msg":"endpoint.remove for a service that is not registered \(never, or no longer\): nothing to do"/,
    );
    expect(lines.join('\n')).toMatch(
      /"meshService":"says-so".*"endpoint":"ghost".*"msg":"endpoint.remove of an endpoint that is not active/,
    );
    // The registered endpoints of says-so are untouched.
    expect((await mesh.getService('says-so')).endpoints).toHaveLength(2);
  });

  it('refuses a bad query with the field and reason', async () => {
    const reply = (await nc.request('mesh.v1.discovery.query', JSON.stringify({ name: 'Not A Name', extra: 1 }))).json<{
      ok: boolean;
      error: { code: string; issues: { path: string }[] };
    }>();
    expect(reply.ok).toBe(false);
    expect(reply.error.code).toBe('MESH_INVALID');
    expect(reply.error.issues.map((i) => i.path).sort()).toEqual(['extra', 'name']); // the unknown field named at its own path
  });
});

describe('registration and watching', () => {
  it('registers, notifies watchers of every change, and answers queries with label filters', async () => {
    const w = watch('catalog');
    await mesh.registerService(validService('catalog'), { wait: true });
    const set = await mesh.getService('catalog');
    expect(set.endpoints.map((e) => [e.id, e.status])).toEqual([
      ['catalog-1', 'healthy'],
      ['catalog-2', 'healthy'],
    ]);
    await mesh.addEndpoint('catalog', { id: 'catalog-3', address: '10.0.0.13', port: 9103, labels: { version: 'v2' } });
    await waitFor(() => w.last()?.endpoints.length === 3, { what: 'watcher to see the added endpoint' });
    const v2 = await mesh.listServices({ labels: { version: 'v2' } });
    expect(v2.find((s) => s.service === 'catalog')?.endpoints.map((e) => e.id)).toEqual(['catalog-2', 'catalog-3']);

    await mesh.removeEndpoint('catalog', 'catalog-1', { drain: '300ms' });
    await waitFor(() => w.last()?.endpoints.find((e) => e.id === 'catalog-1')?.status === 'draining', { what: 'draining endpoint' });
    await waitFor(() => w.last()?.endpoints.length === 2 && !w.last()?.endpoints.some((e) => e.id === 'catalog-1'), {
      what: 'removal after drain',
    });
    const revisions = w.seen.map((s) => s.revision);
    expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
    expect(new Set(revisions).size).toBe(revisions.length);
    w.stop();
  });

  it('publishes nothing when a registration changes nothing', async () => {
    await mesh.registerService(validService('steady'), { wait: true });
    const jsm = await jetstreamManager(nc);
    const lastPublished = async () => {
      const m = await jsm.streams.getMessage(streams.endpoints, { last_by_subj: 'mesh.v1.discovery.endpoints.steady' });
      if (!m) throw new Error('no endpoint set of steady in the stream');
      return m;
    };
    const before = (await lastPublished()).seq;
    await mesh.registerService(validService('steady'));
    await mesh.registerService(validService('steady'));
    await mesh.registerService({ ...validService('steady'), endpoints: validService('steady').endpoints.slice(0, 1) }, { wait: true });
    const after = await lastPublished();
    expect(after.json<EndpointSetV1>().endpoints).toHaveLength(1);
    expect(after.seq).toBeGreaterThan(before);
    // identical re-registrations publish nothing
    const published: number[] = [];
    const sub = nc.subscribe('mesh.v1.discovery.endpoints.steady', {
      callback: (_e, m) => {
        published.push(m.json<EndpointSetV1>().revision);
      },
    });
    await mesh.registerService({ ...validService('steady'), endpoints: validService('steady').endpoints.slice(0, 1) });
    await mesh.registerService({ ...validService('steady'), endpoints: validService('steady').endpoints.slice(0, 1) });
    await new Promise((r) => setTimeout(r, 500));
    sub.unsubscribe();
    expect(published).toEqual([]);
  });

  it('drains a deregistered service, then removes it', async () => {
    await mesh.registerService(validService('legacy'), { wait: true });
    const w = watch('legacy');
    await mesh.deregisterService('legacy', { drain: '400ms' });
    await waitFor(() => w.last()?.endpoints.every((e) => e.status === 'draining') && w.last()?.endpoints.length === 2, {
      what: 'draining',
    });
    await waitFor(() => w.last()?.deregistered === true, { what: 'deregistered' });
    expect(w.last()?.endpoints).toEqual([]);
    await expect(mesh.getService('legacy')).rejects.toMatchObject({ code: 'MESH_NOT_FOUND' });
    w.stop();
  });
});

describe('liveness', () => {
  it('marks endpoints that stop heartbeating unhealthy after the TTL, then removes them', async () => {
    const svc = { ...validService('ttl'), healthCheck: undefined, heartbeat: { ttl: '600ms', deregisterAfter: '2s' } };
    await mesh.registerService(svc, { wait: true });
    const w = watch('ttl');
    const beat = setInterval(() => void mesh.heartbeat('ttl', ['ttl-1']).catch(() => undefined), 150);
    try {
      await waitFor(() => w.last()?.endpoints.find((e) => e.id === 'ttl-2')?.reason === 'heartbeat-expired', { what: 'ttl-2 expired' });
      expect(w.last()?.endpoints.find((e) => e.id === 'ttl-1')?.status).toBe('healthy');
      await waitFor(() => w.last()?.endpoints.length === 1, { what: 'ttl-2 removed', timeoutMs: 10_000 });
      expect(w.last()?.endpoints[0]?.id).toBe('ttl-1');
    } finally {
      clearInterval(beat);
      w.stop();
    }
  });

  it('follows active HTTP health checks with thresholds', async () => {
    let status = 200;
    const servers: Server[] = [];
    const ports: number[] = [];
    for (let i = 0; i < 2; i++) {
      const s = createServer((req, res) => {
        res.statusCode = req.url === '/healthz' && i === 0 ? status : 200;
        res.end();
      });
      s.listen(0, '127.0.0.1');
      await once(s, 'listening');
      servers.push(s);
      ports.push((s.address() as { port: number }).port);
    }
    try {
      await mesh.registerService(
        {
          name: 'checked',
          type: 'http',
          port: 80,
          endpoints: ports.map((port, i) => ({ id: `c${i}`, address: '127.0.0.1', port })),
          healthCheck: {
            protocol: 'http',
            path: '/healthz',
            interval: '200ms',
            timeout: '100ms',
            healthyThreshold: 2,
            unhealthyThreshold: 2,
          },
        },
        { wait: true },
      );
      const w = watch('checked');
      status = 503;
      await waitFor(() => w.last()?.endpoints.find((e) => e.id === 'c0')?.reason === 'check-failed: HTTP 503', { what: 'c0 unhealthy' });
      expect(w.last()?.endpoints.find((e) => e.id === 'c1')?.status).toBe('healthy');
      status = 200;
      await waitFor(() => w.last()?.endpoints.every((e) => e.status === 'healthy'), { what: 'c0 healthy again' });
      w.stop();
    } finally {
      for (const s of servers) s.close();
    }
  });
});
