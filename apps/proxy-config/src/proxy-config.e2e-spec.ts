import { DeliverPolicy, type JetStreamClient, type JetStreamManager, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import {
  type EffectivePolicyV1,
  type EndpointSetV1,
  type ProxyAckV1,
  ProxySnapshotV1,
  type ProxyStatusReplyV1,
  streams,
  subjects,
  type TrustBundleV1,
} from '@novamesh/contracts';
import {
  canaryRuleFixture,
  DEFAULT_INBOUND,
  effectivePolicyFixture,
  endpointSetFixture,
  hashSnapshot,
  rateLimitFixture,
  trafficPolicyFixture,
} from '@novamesh/proxy-config';
import { type ManagedProcess, runMeshctl, startProxyConfig, TestNats, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Drives compiled proxy-config replicas (`npx tsc -b` first) against a real nats-server. Discovery,
// policy and the CA are not running: the test publishes their last-value events itself, exactly
// as they would (endpoint sets, effective policies, the trust bundle), and plays the sidecars.

const STALE_AFTER_MS = 1_500;
const env = { PROXY_CONFIG_STALE_AFTER: `${STALE_AFTER_MS}ms` };
/** Longer than the maximum coalescing delay (100 ms) plus a publish: what "nothing happened" waits. */
const QUIET_MS = 600;

let nats: TestNats;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let p1: ManagedProcess;
let p2: ManagedProcess | undefined;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sets = new Map<string, EndpointSetV1>();

async function publishEndpoints(set: EndpointSetV1): Promise<void> {
  sets.set(set.service, set);
  await js.publish(subjects.endpoints(set.service), JSON.stringify(set));
}
async function publishPolicy(policy: EffectivePolicyV1): Promise<void> {
  await js.publish(subjects.effectivePolicy(policy.service), JSON.stringify(policy));
}

async function stored(service: string): Promise<{ seq: number; snapshot: ProxySnapshotV1 } | undefined> {
  const m = await jsm.streams.getMessage(streams.proxy, { last_by_subj: subjects.proxyConfig(service) }).catch(() => null);
  return m ? { seq: m.seq, snapshot: ProxySnapshotV1.parse(m.json()) } : undefined;
}

/** Waits for the stored snapshot of `service` to satisfy `check`, and returns it. */
async function snapshotWhere(service: string, check: (s: ProxySnapshotV1) => boolean, what: string): Promise<ProxySnapshotV1> {
  return waitFor(
    async () => {
      const s = (await stored(service))?.snapshot;
      return s && check(s) ? s : undefined;
    },
    { what: `${service}: ${what}`, timeoutMs: 10_000 },
  );
}

async function versions(...services: string[]): Promise<Record<string, number | undefined>> {
  const out: Record<string, number | undefined> = {};
  for (const s of services) out[s] = (await stored(s))?.snapshot.version;
  return out;
}

const upstreamNames = (s: ProxySnapshotV1) => s.upstreams.map((u) => u.service);

const bundle: TrustBundleV1 = {
  trustDomain: 'shop.example',
  roots: [
    { pem: '-----BEGIN CERTIFICATE-----\nMIIBroot\n-----END CERTIFICATE-----', fingerprint256: 'aa', notAfter: '2035-01-01T00:00:00Z' },
  ],
  updatedAt: '2025-01-01T00:00:00Z',
};

beforeAll(async () => {
  nats = await TestNats.start();
  p1 = await startProxyConfig({ natsUrl: nats.url, instance: 'pc1', env });
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});

afterAll(async () => {
  await nc?.close();
  await Promise.all([p1?.stop(), p2?.stop()]);
  await nats?.dispose();
});

describe('proxy-config', () => {
  it('publishes a snapshot per registered service with its declared (or all) upstreams', async () => {
    await publishEndpoints(endpointSetFixture('frontend', { upstreams: ['cart', 'ghost'] }));
    await publishEndpoints(endpointSetFixture('cart', { namespace: 'shop', count: 3 }));
    await publishEndpoints(endpointSetFixture('audit', { upstreams: ['cart'] }));

    const frontend = await snapshotWhere('frontend', (s) => upstreamNames(s).includes('cart'), 'cart as upstream');
    expect(upstreamNames(frontend)).toEqual(['cart']);
    expect(frontend.version).toBe(1);
    expect(frontend.hash).toBe(hashSnapshot(frontend));
    expect(frontend.inbound).toEqual(DEFAULT_INBOUND);
    const cart = frontend.upstreams[0];
    expect(cart).toMatchObject({
      type: 'http',
      port: 8080,
      identity: 'spiffe://novamesh.local/ns/shop/svc/cart',
      mtls: 'permissive',
      loadBalancing: { algorithm: 'round-robin' },
    });
    expect(cart?.endpoints.map((e) => e.id)).toEqual(['cart-1', 'cart-2', 'cart-3']);
    // cart declared nothing: it calls every service, itself included.
    await snapshotWhere('cart', (s) => upstreamNames(s).join() === 'audit,cart,frontend', 'every service as upstream');
    await snapshotWhere('audit', (s) => upstreamNames(s).join() === 'cart', 'cart only');
    await p1.waitForLine(/declared upstreams not registered yet.*ghost|ghost.*declared upstreams not registered yet/);
  });

  it("carries the service's own policy inbound, its upstreams' policies outbound, and the trust bundle", async () => {
    await publishPolicy(
      effectivePolicyFixture('cart', {
        traffic: trafficPolicyFixture('cart'),
        routes: [canaryRuleFixture('cart')],
        rateLimits: [rateLimitFixture('cart')],
        mtls: { mode: 'strict', source: 'MutualTLSPolicy.cart-mtls' },
      }),
    );
    await js.publish(subjects.caBundle, JSON.stringify(bundle));

    const cart = await snapshotWhere('cart', (s) => s.inbound.mtls.mode === 'strict' && s.trust !== undefined, 'strict inbound + trust');
    expect(cart.inbound.rateLimits.map((r) => r.name)).toEqual(['cart-limits']);
    expect(cart.trust).toEqual({ trustDomain: 'shop.example', roots: [bundle.roots[0]?.pem], revokedSerials: [] });
    const frontend = await snapshotWhere('frontend', (s) => s.upstreams[0]?.mtls === 'strict' && s.trust !== undefined, 'cart policy');
    const up = frontend.upstreams[0];
    expect(up?.identity).toBe('spiffe://shop.example/ns/shop/svc/cart');
    expect(up?.loadBalancing).toEqual({ algorithm: 'least-request', choiceCount: 2 });
    expect(up?.subsets.map((s) => s.name)).toEqual(['v1', 'v2']);
    expect(up?.routes).toEqual([expect.objectContaining({ rule: 'cart-canary', name: 'canary' })]);
    expect(frontend.inbound.mtls.mode).toBe('permissive');
  });

  it('publishes nothing for a change that changes no snapshot', async () => {
    await sleep(QUIET_MS);
    const before = await versions('frontend', 'cart', 'audit');
    const cart = sets.get('cart') as EndpointSetV1;
    await publishEndpoints({ ...cart, updatedAt: new Date().toISOString() });
    await publishPolicy(
      effectivePolicyFixture('cart', {
        revision: 2,
        traffic: trafficPolicyFixture('cart'),
        routes: [canaryRuleFixture('cart')],
        rateLimits: [rateLimitFixture('cart')],
        mtls: { mode: 'strict', source: 'MutualTLSPolicy.cart-mtls' },
        updatedAt: new Date().toISOString(),
      }),
    );
    await sleep(QUIET_MS);
    expect(await versions('frontend', 'cart', 'audit')).toEqual(before);
  });

  it('recomputes only the snapshots a change touches: an unrelated declared service gets no new version', async () => {
    const before = await versions('frontend', 'cart', 'audit');
    // frontend declared its upstreams (not itself): only cart, which calls everything, changes.
    await publishEndpoints(endpointSetFixture('frontend', { upstreams: ['cart', 'ghost'], count: 3, revision: 2 }));
    await snapshotWhere('cart', (s) => s.upstreams.find((u) => u.service === 'frontend')?.endpoints.length === 3, 'frontend scaled');
    // ghost registers: frontend (declared it) and cart (calls everything) change; audit does not.
    await publishEndpoints(endpointSetFixture('ghost'));
    await snapshotWhere('frontend', (s) => upstreamNames(s).join() === 'cart,ghost', 'ghost appeared');
    await snapshotWhere('cart', (s) => upstreamNames(s).includes('ghost'), 'ghost appeared');
    await sleep(QUIET_MS);
    const after = await versions('frontend', 'cart', 'audit');
    expect(after).toEqual({ frontend: (before.frontend ?? 0) + 1, cart: (before.cart ?? 0) + 2, audit: before.audit });
  });

  it('coalesces a burst of 200 endpoint changes into far fewer snapshots, ending with the last one', async () => {
    await sleep(QUIET_MS);
    const before = await versions('frontend', 'audit');
    const base = sets.get('cart') as EndpointSetV1;
    const burst = Array.from({ length: 200 }, (_, i) =>
      endpointSetFixture('cart', { namespace: 'shop', count: (i % 7) + 1, revision: base.revision + 1 + i }),
    );
    const t0 = Date.now();
    await Promise.all(burst.map((s) => publishEndpoints(s)));
    const last = burst[burst.length - 1] as EndpointSetV1;
    const frontend = await snapshotWhere('frontend', (s) => s.upstreams[0]?.endpointsRevision === last.revision, 'last revision');
    const settledMs = Date.now() - t0;
    expect(frontend.upstreams[0]?.endpoints.map((e) => e.id)).toEqual(last.endpoints.map((e) => e.id).sort());
    await sleep(QUIET_MS);
    const after = await versions('frontend', 'audit');
    const published = (after.frontend ?? 0) - (before.frontend ?? 0);
    const publishedAudit = (after.audit ?? 0) - (before.audit ?? 0);
    expect(published).toBeGreaterThanOrEqual(1);
    expect(published).toBeLessThanOrEqual(50);
    expect(publishedAudit).toBeLessThanOrEqual(50);
    expect(settledMs).toBeLessThan(10_000);
  });

  it('keeps versions across a restart: no version reused, nothing unchanged republished', async () => {
    await sleep(QUIET_MS);
    const before = new Map<string, number | undefined>();
    for (const s of ['frontend', 'cart', 'audit', 'ghost']) before.set(s, (await stored(s))?.seq);
    const versionsBefore = await versions('cart');
    await p1.stop();
    p1 = await startProxyConfig({ natsUrl: nats.url, instance: 'pc1', env });
    await sleep(QUIET_MS);
    for (const s of ['frontend', 'cart', 'audit', 'ghost']) expect((await stored(s))?.seq, s).toBe(before.get(s));
    await publishPolicy(effectivePolicyFixture('cart', { revision: 3, mtls: { mode: 'permissive', source: null } }));
    const cart = await snapshotWhere('cart', (s) => s.inbound.rateLimits.length === 0, 'policy removed');
    expect(cart.version).toBe((versionsBefore.cart ?? 0) + 1);
  });

  it('two replicas publish one version sequence per service: no gaps, no duplicates, no repeats of unchanged content', async () => {
    p2 = await startProxyConfig({ natsUrl: nats.url, instance: 'pc2', env });
    await sleep(QUIET_MS);
    const first = await versions('frontend', 'cart', 'audit');
    // Keep every snapshot (the stream normally keeps the last per service) to audit the sequence.
    const info = await jsm.streams.info(streams.proxy);
    await jsm.streams.update(streams.proxy, { ...info.config, max_msgs_per_subject: -1 });
    try {
      let revision = (sets.get('cart') as EndpointSetV1).revision;
      for (let i = 0; i < 12; i++) {
        await publishEndpoints(endpointSetFixture('cart', { namespace: 'shop', count: (i % 4) + 1, revision: ++revision }));
        await sleep(i % 3 === 0 ? 0 : 40 + (i % 5) * 20);
      }
      await publishPolicy(effectivePolicyFixture('audit', { revision: 1, mtls: { mode: 'strict', source: 'MutualTLSPolicy.audit' } }));
      const lastSet = sets.get('cart') as EndpointSetV1;
      await snapshotWhere('frontend', (s) => s.upstreams[0]?.endpointsRevision === lastSet.revision, 'last cart revision');
      await snapshotWhere('cart', (s) => s.upstreams.find((u) => u.service === 'audit')?.mtls === 'strict', 'audit strict');
      await sleep(QUIET_MS);

      for (const service of ['frontend', 'cart', 'audit']) {
        const all: ProxySnapshotV1[] = [];
        const consumer = await js.consumers.get(streams.proxy, {
          filter_subjects: subjects.proxyConfig(service),
          deliver_policy: DeliverPolicy.All,
        });
        const pending = (await consumer.info(true)).num_pending;
        const msgs = await consumer.fetch({ max_messages: pending, expires: 2_000 });
        for await (const m of msgs) all.push(ProxySnapshotV1.parse(m.json()));
        const seen = all.filter((s) => s.version > (first[service] ?? 0)).map((s) => s.version);
        const startAt = (first[service] ?? 0) + 1;
        expect(seen, service).toEqual(Array.from({ length: seen.length }, (_, i) => startAt + i));
        for (let i = 1; i < all.length; i++) expect(all[i]?.hash, `${service} v${all[i]?.version}`).not.toBe(all[i - 1]?.hash);
      }
      const after = await versions('frontend', 'cart', 'audit');
      expect((after.cart ?? 0) - (first.cart ?? 0)).toBeGreaterThanOrEqual(2);
      expect(p1.running && p2.running).toBe(true);
    } finally {
      await jsm.streams.update(streams.proxy, { ...info.config, max_msgs_per_subject: 1 });
    }
  });

  it('reports sidecars in sync, behind, rejected and stale, from whichever replica answers', async () => {
    const latest = (await stored('frontend'))?.snapshot as ProxySnapshotV1;
    const ack = (sidecar: string, version: number, hash: string, extra: Partial<ProxyAckV1> = {}): ProxyAckV1 => ({
      service: 'frontend',
      sidecar,
      version,
      hash,
      address: `10.1.0.${sidecar.length}:15001`,
      sentAt: new Date().toISOString(),
      ...extra,
    });
    const send = (a: ProxyAckV1) => nc.publish(subjects.proxyAck(a.service, a.sidecar), JSON.stringify(a));
    send(ack('fe-gone', latest.version, latest.hash));
    await nc.flush();
    await sleep(STALE_AFTER_MS + 300);
    send(ack('fe-synced', latest.version, latest.hash));
    send(ack('fe-behind', latest.version - 1, 'older'));
    send(
      ack('fe-refused', latest.version - 1, 'older', {
        rejected: { version: latest.version, hash: latest.hash, reason: 'subset v3 has no endpoints' },
      }),
    );
    await nc.flush();

    for (let i = 0; i < 4; i++) {
      const reply = await waitFor(async () => {
        const r = (await nc.request(subjects.proxyStatus, JSON.stringify({ service: 'frontend' }))).json<ProxyStatusReplyV1>();
        return r.ok && r.sidecars.length === 4 ? r : undefined;
      });
      const by = Object.fromEntries(reply.sidecars.map((s) => [s.sidecar, s]));
      expect(Object.keys(by)).toEqual(['fe-behind', 'fe-gone', 'fe-refused', 'fe-synced']);
      expect(by['fe-synced']).toMatchObject({
        inSync: true,
        lagMs: 0,
        stale: false,
        version: latest.version,
        latestVersion: latest.version,
      });
      expect(by['fe-behind']).toMatchObject({ inSync: false, stale: false, version: latest.version - 1 });
      expect(by['fe-behind']?.lagMs).toBeGreaterThan(0);
      expect(by['fe-refused']).toMatchObject({
        inSync: false,
        rejected: { version: latest.version, reason: 'subset v3 has no endpoints' },
      });
      expect(by['fe-gone']).toMatchObject({ inSync: true, stale: true });
      expect(by['fe-gone']?.lastSeenMs).toBeGreaterThan(STALE_AFTER_MS);
    }

    const table = await runMeshctl(['proxy-status', '--service', 'frontend'], { NATS_URL: nats.url });
    expect(table.stderr).toBe('');
    expect(table.code).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header?.split(/\s{2,}/)).toEqual(['SERVICE', 'SIDECAR', 'VERSION', 'LATEST', 'SYNC', 'LAG', 'LAST SEEN']);
    const sync = Object.fromEntries(rows.filter((r) => r.startsWith('frontend ')).map((r) => [r.split(/\s+/)[1], r.split(/\s+/)[4]]));
    expect(sync).toEqual({ 'fe-behind': 'STALE', 'fe-gone': 'STALE', 'fe-refused': 'REJECTED', 'fe-synced': 'SYNCED' });
    expect(table.stdout).toContain('fe-refused rejected version');

    const json = await runMeshctl(['proxy-status', '-o', 'json'], { NATS_URL: nats.url });
    expect(json.code, json.stderr).toBe(0);
    expect((JSON.parse(json.stdout) as { sidecar: string }[]).map((s) => s.sidecar)).toEqual([
      'fe-behind',
      'fe-gone',
      'fe-refused',
      'fe-synced',
    ]);
  });

  it('answers an invalid status request with the field and the reason', async () => {
    const ask = async (body: string) => (await nc.request(subjects.proxyStatus, body)).json<ProxyStatusReplyV1>();
    const cases: [string, string, RegExp][] = [
      ['{"service": 5}', 'service', /string/i],
      ['{"service": "Not A Name"}', 'service', /service name/],
      ['{"svc": "cart"}', 'svc', /unknown field; allowed fields: service/],
    ];
    for (const [body, path, message] of cases) {
      const r = await ask(body);
      expect(r.ok, body).toBe(false);
      if (r.ok) continue;
      expect(r.error.code).toBe('MESH_INVALID');
      expect(
        r.error.issues.some((i) => i.path === path && message.test(i.message)),
        JSON.stringify(r.error),
      ).toBe(true);
    }
    const bad = await ask('not json');
    expect(!bad.ok && bad.error.code).toBe('MESH_BAD_JSON');
    const none = await ask('');
    expect(none.ok).toBe(true);
  });

  it('skips malformed input messages and keeps working', async () => {
    await js.publish(subjects.endpoints('junk'), 'not json');
    await js.publish(subjects.endpoints('liar'), JSON.stringify(endpointSetFixture('cart', { count: 1, revision: 1 })));
    await js.publish(subjects.effectivePolicy('junk'), JSON.stringify({ service: 'junk', revision: 'one' }));
    await js.publish(subjects.proxyConfig('junk'), '{"version": -1}');
    nc.publish(subjects.proxyAck('frontend', 'fe-junk'), '{"service": "frontend"}');
    nc.publish(
      subjects.proxyAck('frontend', 'fe-undated'),
      JSON.stringify({ service: 'frontend', sidecar: 'fe-undated', version: 1, hash: 'h', sentAt: 'not a date' }),
    );
    const revision = (sets.get('cart') as EndpointSetV1).revision + 1;
    await publishEndpoints(endpointSetFixture('cart', { namespace: 'shop', count: 2, revision }));
    await snapshotWhere('frontend', (s) => s.upstreams[0]?.endpointsRevision === revision, 'cart change after junk');
    for (const p of [p1, p2 as ManagedProcess]) {
      expect(p.running).toBe(true);
      await p.waitForLine(/invalid endpoint set skipped/);
      await p.waitForLine(/invalid effective policy skipped/);
      await p.waitForLine(/invalid proxy ack skipped/);
      await p.waitForLine(/"path":"sentAt","message":"must be an ISO 8601 time.*"msg":"invalid proxy ack skipped"/);
    }
    // Neither is listed.
    const listed = (
      await nc.request(subjects.proxyStatus, JSON.stringify({ service: 'frontend' }), { timeout: 5_000 })
    ).json<ProxyStatusReplyV1>();
    expect(listed.ok && listed.sidecars.map((x) => x.sidecar)).not.toContain('fe-undated');
    // The liar's endpoint set (it names cart) changed nothing: cart still has two endpoints, no "liar" upstream.
    const cartSnap = (await stored('cart'))?.snapshot as ProxySnapshotV1;
    expect(upstreamNames(cartSnap)).not.toContain('liar');
  });

  it('publishes the right snapshot over one no replica published: unreadable, or without its message id', async () => {
    const before = (await stored('frontend'))?.snapshot as ProxySnapshotV1;
    await js.publish(subjects.proxyConfig('frontend'), 'hello');
    const repaired = await snapshotWhere('frontend', (s) => s.version > before.version, 'a snapshot over the unreadable one');
    expect(repaired.hash).toBe(before.hash);
    expect(upstreamNames(repaired)).toEqual(upstreamNames(before));
    // A well-formed copy with other content (what an old copy of the subject would be), published without a message id.
    await js.publish(
      subjects.proxyConfig('frontend'),
      JSON.stringify({ ...repaired, hash: 'f'.repeat(64), version: repaired.version + 1 }),
    );
    const again = await snapshotWhere('frontend', (s) => s.version > repaired.version + 1, 'a snapshot over the foreign one');
    expect(again.hash).toBe(before.hash);
  });

  it('takes no deeper subject for a service’s own: versions go on from the service’s snapshot', async () => {
    const before = (await stored('frontend'))?.snapshot as ProxySnapshotV1;
    await js.publish(`${subjects.proxyConfig('backup')}.frontend`, JSON.stringify({ ...before, version: 500 }));
    const revision = (sets.get('cart') as EndpointSetV1).revision + 1;
    await publishEndpoints(endpointSetFixture('cart', { namespace: 'shop', count: 3, revision }));
    const next = await snapshotWhere('frontend', (s) => s.upstreams[0]?.endpointsRevision === revision, 'the cart change');
    expect(next.version).toBe(before.version + 1);
    const status = (await nc.request(subjects.proxyStatus, JSON.stringify({ service: 'frontend' }))).json<ProxyStatusReplyV1>();
    expect(status.ok && status.sidecars.every((x) => x.latestVersion === next.version)).toBe(true);
  });
});
