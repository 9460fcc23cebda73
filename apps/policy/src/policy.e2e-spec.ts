import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type EffectivePolicyV1, MeshError, streams, subjects, validService } from '@novamesh/contracts';
import { INVALID_POLICIES } from '@novamesh/policy';
import { MeshManager } from '@novamesh/sdk';
import { type ManagedProcess, startDiscovery, startPolicy, TestNats, TestRedis, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let nats: TestNats;
let redis: TestRedis;
let nc: NatsConnection;
let mesh: MeshManager;
const procs: ManagedProcess[] = [];

beforeAll(async () => {
  [nats, redis] = await Promise.all([TestNats.start(), TestRedis.start()]);
  procs.push(await startDiscovery({ natsUrl: nats.url, redisUrl: redis.url, instance: 'd1' }));
  procs.push(await startPolicy({ natsUrl: nats.url, instance: 'p1' }));
  procs.push(await startPolicy({ natsUrl: nats.url, instance: 'p2' }));
  nc = await connect({ servers: nats.url });
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 10_000 });
  await mesh.initialize();
  await mesh.registerService(validService('payment'), { wait: true });
});

afterAll(async () => {
  await mesh?.close();
  await nc?.close();
  await Promise.all(procs.map((p) => p.stop()));
  await Promise.all([nats?.dispose(), redis?.dispose()]);
});

/** Collects effective policies of a service as a late subscriber would see them. */
function watch(service: string) {
  const seen: EffectivePolicyV1[] = [];
  const abort = new AbortController();
  void (async () => {
    for await (const e of mesh.watchEffectivePolicy(service, { signal: abort.signal })) seen.push(e);
  })();
  return { seen, stop: () => abort.abort(), last: () => seen[seen.length - 1] };
}

async function effectiveMessages(service: string): Promise<number> {
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(streams.config, { subjects_filter: subjects.effectivePolicy(service) });
  return info.state.last_seq;
}

const seedTraffic = {
  kind: 'TrafficPolicy',
  name: 'payment-traffic',
  serviceName: 'payment',
  loadBalancing: { algorithm: 'least-request', choiceCount: 2 },
};

describe('applying policies', () => {
  it('stores a valid policy, publishes the service’s effective policy, and a late subscriber gets it', async () => {
    const r = await mesh.applyPolicy(seedTraffic);
    expect(r).toMatchObject({ ok: true, kind: 'TrafficPolicy', name: 'payment-traffic', created: true, unchanged: false, dryRun: false });
    expect(r.revision).toBeGreaterThan(0);
    const w = watch('payment');
    await waitFor(() => w.last()?.traffic?.name === 'payment-traffic', { what: 'effective policy with the traffic policy' });
    expect(w.last()?.sources).toContainEqual({ kind: 'TrafficPolicy', name: 'payment-traffic', revision: r.revision });
    w.stop();
  });

  it('re-applying the same policy changes nothing and publishes nothing', async () => {
    const before = await effectiveMessages('payment');
    const again = await mesh.applyPolicy(seedTraffic);
    expect(again.unchanged).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    expect(await effectiveMessages('payment')).toBe(before);
  });

  it('dry-run shows the diff and the effective result without storing', async () => {
    const before = await mesh.getPolicy('TrafficPolicy', 'payment-traffic');
    const dry = await mesh.applyPolicy({ ...seedTraffic, loadBalancing: { algorithm: 'random' } }, { dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(dry.diff).toMatch(/random/);
    expect(dry.effective?.traffic).toBeDefined();
    const after = await mesh.getPolicy('TrafficPolicy', 'payment-traffic');
    expect(after.revision).toBe(before.revision);
  });
});

describe('invalid policies', () => {
  it(`refuses each of the ${INVALID_POLICIES.length} invalid policies with its path and reason, storing nothing`, async () => {
    expect(INVALID_POLICIES.length).toBeGreaterThanOrEqual(40);
    const before = (await mesh.listPolicies()).length;
    for (const c of INVALID_POLICIES) {
      const err = await mesh.applyPolicy(c.policy as Record<string, unknown>).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, c.name).toBeInstanceOf(MeshError);
      const e = err as MeshError;
      expect(e.code, c.name).toBe('MESH_INVALID');
      expect(
        e.issues.some((i) => i.path === c.path && c.message.test(i.message)),
        `${c.name}: wanted ${c.path} ~ ${c.message}, got ${JSON.stringify(e.issues)}`,
      ).toBe(true);
    }
    expect((await mesh.listPolicies()).length).toBe(before);
    expect(procs.every((p) => p.running)).toBe(true);
  });

  it('refuses a malformed request body with the field named', async () => {
    const reply = (await nc.request(subjects.policy('apply'), '{"dryRun": "yes"}')).json<{
      ok: boolean;
      error: { code: string; issues: { path: string }[] };
    }>();
    expect(reply.ok).toBe(false);
    expect(reply.error.issues.map((i) => i.path)).toContain('dryRun');
    const bad = (await nc.request(subjects.policy('apply'), 'not json')).json<{ ok: boolean; error: { code: string } }>();
    expect(bad.error.code).toBe('MESH_BAD_JSON');
  });
});

describe('revisions', () => {
  it('resolves concurrent applies by revision: exactly one writer wins each revision, no write is lost silently', async () => {
    const base = await mesh.applyPolicy({ ...seedTraffic, name: 'contended', serviceName: 'contended' });
    const writers = Array.from({ length: 8 }, (_, i) =>
      mesh
        .applyPolicy(
          {
            ...seedTraffic,
            name: 'contended',
            serviceName: 'contended',
            loadBalancing: { algorithm: 'random' },
            description: `writer ${i}`,
          },
          { expectedRevision: base.revision },
        )
        .then(
          (r) => ({ ok: true as const, r }),
          (e: MeshError) => ({ ok: false as const, code: e.code }),
        ),
    );
    const results = await Promise.all(writers);
    const winners = results.filter((r) => r.ok);
    expect(winners).toHaveLength(1);
    expect(results.filter((r) => !r.ok).every((r) => !r.ok && r.code === 'MESH_CONFLICT')).toBe(true);
    const stored = await mesh.getPolicy('TrafficPolicy', 'contended');
    expect(winners[0]?.ok && stored.revision === winners[0].r.revision).toBe(true);
  });

  it('keeps one TrafficPolicy per service when several are created at once, across two replicas: the first stored stays, the others are refused and undone', async () => {
    const names = Array.from({ length: 6 }, (_, i) => `racing-tp-${i}`);
    const results = await Promise.all(
      names.map((name) =>
        mesh.applyPolicy({ ...seedTraffic, name, serviceName: 'racing' }).then(
          () => ({ name, ok: true as const }),
          (e: MeshError) => ({ name, ok: false as const, code: e.code, message: e.message }),
        ),
      ),
    );
    const won = results.filter((r) => r.ok);
    expect(won, JSON.stringify(results)).toHaveLength(1);
    // Refused as any second one is (the one named may be another racer, itself refused a moment later).
    for (const r of results)
      if (!r.ok)
        expect([r.code, r.message]).toEqual([
          'MESH_CONFLICT',
          expect.stringMatching(/already configures "racing" \(one TrafficPolicy per service\)/),
        ]);
    const stored = await Promise.all(
      names.map((name) =>
        mesh.getPolicy('TrafficPolicy', name).then(
          () => name,
          () => undefined,
        ),
      ),
    );
    expect(stored.filter(Boolean)).toEqual([won[0]?.name]);
  });

  it('keeps the last 20 revisions, and rolls back to one of them', async () => {
    const revisions: number[] = [];
    for (let i = 0; i < 25; i++)
      revisions.push(
        (await mesh.applyPolicy({ ...seedTraffic, name: 'historic', serviceName: 'historic', description: `v${i}` })).revision,
      );
    const history = await mesh.policyHistory('TrafficPolicy', 'historic');
    expect(history.map((h) => h.revision)).toEqual(revisions.slice(5));
    const target = revisions[10] as number;
    const rolled = await mesh.rollbackPolicy('TrafficPolicy', 'historic', target);
    expect(rolled.revision).toBeGreaterThan(revisions[24] as number);
    expect((await mesh.getPolicy('TrafficPolicy', 'historic')).policy).toMatchObject({ description: 'v10' });
    await expect(mesh.rollbackPolicy('TrafficPolicy', 'historic', revisions[0] as number)).rejects.toMatchObject({
      code: 'MESH_NOT_FOUND',
    });
  });

  it('deletes with an expected revision and reports a missing policy', async () => {
    const r = await mesh.applyPolicy({ ...seedTraffic, name: 'doomed', serviceName: 'doomed' });
    await expect(mesh.deletePolicy('TrafficPolicy', 'doomed', { expectedRevision: r.revision + 1000 })).rejects.toMatchObject({
      code: 'MESH_CONFLICT',
    });
    await mesh.deletePolicy('TrafficPolicy', 'doomed', { expectedRevision: r.revision });
    await expect(mesh.getPolicy('TrafficPolicy', 'doomed')).rejects.toMatchObject({ code: 'MESH_NOT_FOUND' });
  });
});

describe('effective policy', () => {
  it('merges a mesh-wide mTLS policy into every registered service, a service policy overriding it', async () => {
    await mesh.registerService(validService('catalog'), { wait: true });
    await mesh.applyPolicy({ kind: 'MutualTLSPolicy', name: 'mesh-strict', serviceName: '*', mode: 'strict' });
    await mesh.applyPolicy({ kind: 'MutualTLSPolicy', name: 'catalog-permissive', serviceName: 'catalog', mode: 'permissive' });
    const payment = watch('payment');
    const catalog = watch('catalog');
    await waitFor(() => payment.last()?.mtls.mode === 'strict', { what: 'payment strict' });
    await waitFor(() => catalog.last()?.mtls.mode === 'permissive' && catalog.last()?.mtls.source?.includes('catalog-permissive'), {
      what: 'catalog permissive from its own policy',
    });
    payment.stop();
    catalog.stop();
  });

  it('maps the seed’s enableMutualTLS onto a strict MutualTLSPolicy with the certificate files', async () => {
    await mesh.enableMutualTLS('payment', '/etc/novamesh/payment.crt', '/etc/novamesh/payment.key', '/etc/novamesh/ca.pem');
    const w = watch('payment');
    await waitFor(() => w.last()?.mtls.certificates?.certPath === '/etc/novamesh/payment.crt', {
      what: 'certificates in the effective policy',
    });
    expect(w.last()?.mtls).toMatchObject({ mode: 'strict', source: 'MutualTLSPolicy.payment-mtls' });
    w.stop();
    await expect(mesh.enableMutualTLS('payment', 'relative.crt', '/k', '/ca')).rejects.toMatchObject({
      code: 'MESH_INVALID',
      issues: [{ path: 'certificates.certPath', message: expect.stringMatching(/must be an absolute file path/) }],
    });
  });

  it('two replicas publish a mesh-wide change once per service, each seeing its publications stored', async () => {
    const services = Array.from({ length: 30 }, (_, i) => `fleet-${i}`);
    await Promise.all(services.map((s) => mesh.registerService(validService(s), { wait: true })));
    await waitFor(async () => (await Promise.all(services.map(effectiveMessages))).every((seq) => seq > 0), { what: 'defaults published' });
    await new Promise((r) => setTimeout(r, 300));
    // What the stream stores from now on (not what is published: a duplicate is dropped by its message id).
    const consumer = await jetstream(nc).consumers.get(streams.config, {
      filter_subjects: subjects.effectivePolicyAll,
      deliver_policy: DeliverPolicy.New,
    });
    const storedPer = new Map<string, EffectivePolicyV1[]>();
    const messages = await consumer.consume();
    void (async () => {
      for await (const m of messages) {
        const e = m.json<EffectivePolicyV1>();
        storedPer.set(e.service, [...(storedPer.get(e.service) ?? []), e]);
      }
    })();
    const logged = procs.map((p) => p.output.length);
    await mesh.applyPolicy({
      kind: 'AuthorizationPolicy',
      name: 'fleet-deny',
      serviceName: '*',
      action: 'DENY',
      rules: [{ from: { namespaces: ['quarantine'] } }],
    });
    await waitFor(
      () => services.every((s) => storedPer.get(s)?.some((e) => e.authorization.policies.some((p) => p.name === 'fleet-deny'))),
      {
        what: 'every service to get the mesh-wide policy',
      },
    );
    await new Promise((r) => setTimeout(r, 500));
    await messages.close();
    // Both replicas published the change; the stream stored it once per service.
    for (const s of services) expect(storedPer.get(s)).toHaveLength(1);
    // And the replicas saw their publications stored (their own copy or the other's, same message
    // id) promptly, none taken for lost. (A replica that saw the other's copy stored before sending
    // its own sends nothing, so only the two together account for every service.)
    const rounds = (i: number) =>
      (procs[i]?.output.slice(logged[i]) ?? [])
        .filter((l) => l.includes('"effective policies published"'))
        .map((l) => JSON.parse(l) as { published: number; failed: number; ms: number });
    await waitFor(() => [1, 2].flatMap(rounds).reduce((n, r) => n + r.published, 0) >= services.length, {
      timeoutMs: 2_000,
      what: 'the policy replicas to see their publications stored',
    });
    await new Promise((r) => setTimeout(r, 1_000));
    for (const r of [1, 2].flatMap(rounds)) expect(r).toMatchObject({ failed: 0 });
  });

  it('publishes a service’s effective policy again over a stray unreadable message on its subject', async () => {
    const jsm = await jetstreamManager(nc);
    const last = async () => {
      const m = await jsm.streams.getMessage(streams.config, { last_by_subj: subjects.effectivePolicy('payment') });
      try {
        return m ? (JSON.parse(new TextDecoder().decode(m.data)) as EffectivePolicyV1) : undefined;
      } catch {
        return undefined;
      }
    };
    const before = await last();
    expect(before?.service).toBe('payment');
    for (const stray of ['not json', JSON.stringify({ service: 'payment', mtls: 'none' })]) {
      await jetstream(nc).publish(subjects.effectivePolicy('payment'), stray);
      const again = await waitFor(async () => ((await last())?.sources ? await last() : undefined), {
        timeoutMs: 5_000,
        what: `payment's effective policy published over ${stray}`,
      });
      expect({ ...again, revision: 0, updatedAt: '' }).toEqual({ ...before, revision: 0, updatedAt: '' });
    }
  });

  it('analyze reports a policy for a service that is not registered', async () => {
    await mesh.applyPolicy({ ...seedTraffic, name: 'ghost-traffic', serviceName: 'ghost' });
    const findings = await mesh.analyzePolicies();
    expect(findings.some((f) => f.level === 'warning' && /ghost/.test(f.message))).toBe(true);
  });

  it('takes no stray endpoint set: one naming another service than its subject’s is skipped with a warning, so that service still counts as not registered', async () => {
    const subject = subjects.endpoints('stray');
    const set = {
      service: 'ghost',
      revision: 1,
      type: 'http',
      port: 80,
      endpoints: [],
      deregistered: false,
      updatedAt: new Date().toISOString(),
    };
    await jetstream(nc).publish(subject, JSON.stringify(set));
    for (const p of procs.filter((q) => q.name.startsWith('policy')))
      await p.waitForLine(new RegExp(`"subject":"${subject.replace(/\./g, '\\.')}","msg":"unreadable message ignored"`), 10_000);
    const findings = await mesh.analyzePolicies();
    expect(findings.some((f) => f.level === 'warning' && /ghost/.test(f.message))).toBe(true);
  });
});

describe('MESH_CONFIG deleted', () => {
  it('a replica creates it again with the mesh configuration and publishes every service’s effective policy into it', async () => {
    const p3 = await startPolicy({ natsUrl: nats.url, instance: 'p3', env: { POLICY_STREAM_RECHECK: '300ms' } });
    procs.push(p3);
    const jsm = await jetstreamManager(nc);
    const stored = async (service: string) =>
      (await jsm.streams.getMessage(streams.config, { last_by_subj: subjects.effectivePolicy(service) }))?.json<EffectivePolicyV1>();
    const before = await stored('payment');
    if (!before) throw new Error('no effective policy of payment stored');
    const { created } = await jsm.streams.info(streams.config);

    // Deleted and left deleted: policy, which publishes into it, creates it again.
    await jsm.streams.delete(streams.config);
    const after = await waitFor(async () => stored('payment').catch(() => undefined), {
      timeoutMs: 10_000,
      what: 'the effective policy of payment in the stream policy created again',
    });
    const info = await jsm.streams.info(streams.config);
    expect(info.created).not.toBe(created);
    expect(info.config).toMatchObject({ subjects: [subjects.effectivePolicyAll], max_msgs_per_subject: 1 });
    // The same effective policy as before (what the policies say has not changed).
    const { updatedAt: _u, revision: _r, ...was } = before as EffectivePolicyV1 & { updatedAt?: string };
    expect(after).toMatchObject(was);
    // p3 checks every 300 ms, the others every 10 s: usually p3 creates it, but any replica may.
    expect(procs.some((p) => p.output.some((l) => l.includes('"msg":"the stream was missing; created it again"')))).toBe(true);
    await waitFor(async () => (await stored('catalog').catch(() => undefined)) !== undefined, {
      timeoutMs: 10_000,
      what: 'another service’s effective policy republished too',
    });
  });
});
