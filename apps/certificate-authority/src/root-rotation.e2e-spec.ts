import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type KV, Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { CA_FILES, certificateInfo } from '@novamesh/ca';
import { buckets, type CaCertRecordV1, MeshError, subjects, type TrustBundleV1 } from '@novamesh/contracts';
import { MeshManager, type WorkloadCertificate } from '@novamesh/sdk';
import { type ManagedProcess, runMeshctl, startCertificateAuthority, TestNats, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Root rotation across two CA replicas sharing one CA directory (the compiled app as processes,
// a real nats-server): the begin lock, and the live-certificate count that gates `finish`.

/** RotationLock's key in mesh_ca_certs (rotation-lock.ts). */
const LOCK_KEY = 'root-rotation-lock';
const TD = 'novamesh.local';
const spiffe = (service: string) => `spiffe://${TD}/ns/default/svc/${service}`;

let nats: TestNats;
let nc: NatsConnection;
let kv: KV;
let mesh: MeshManager;
let caDir: string;
const replicas: ManagedProcess[] = [];
/** Every trust bundle published on mesh.v1.ca.bundle during the run. */
const bundles: TrustBundleV1[] = [];
let oldRoot: string;
/** payment renewed once before the rotation (its first certificate is superseded). */
let payment: WorkloadCertificate;
let orders: WorkloadCertificate;

const meshctl = (...args: string[]) => runMeshctl(['--nats', nats.url, ...args]);
const renew = (service: string, cert: WorkloadCertificate) =>
  mesh.requestCertificate({ service, certificatePem: cert.certificatePem, keyPem: cert.keyPem });
const liveCounts = async () =>
  Object.fromEntries((await mesh.rotateRoot('status')).roots.map((r) => [r.role, r.liveCertificates] as const));

beforeAll(async () => {
  nats = await TestNats.start();
  caDir = mkdtempSync(join(tmpdir(), 'novamesh-rotation-lock-ca-'));
  for (const instance of ['ca1', 'ca2']) replicas.push(await startCertificateAuthority({ natsUrl: nats.url, instance, caDir }));
  nc = await connect({ servers: nats.url });
  kv = await new Kvm(nc).open(buckets.caCerts);
  const sub = nc.subscribe(subjects.caBundle);
  void (async () => {
    for await (const m of sub) bundles.push(m.json<TrustBundleV1>());
  })();
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 10_000 });
  await mesh.initialize();
  oldRoot = (await mesh.getTrustBundle()).roots[0]!.fingerprint256;

  // Under the old root: payment (renewed once: its first certificate no longer counts), orders,
  // a revoked certificate and an expired one (neither counts).
  payment = await renew(
    'payment',
    await mesh.requestCertificate({ service: 'payment', token: (await mesh.createJoinToken('payment')).token }),
  );
  orders = await mesh.requestCertificate({ service: 'orders', token: (await mesh.createJoinToken('orders')).token });
  const revoked = await mesh.requestCertificate({ service: 'legacy', token: (await mesh.createJoinToken('legacy')).token });
  await mesh.revokeCertificate(revoked.serial);
  const expired: CaCertRecordV1 = {
    serial: 'cd'.repeat(16),
    spiffeId: spiffe('legacy'),
    namespace: 'default',
    service: 'legacy',
    notBefore: '2020-01-01T00:00:00.000Z',
    notAfter: '2020-01-02T00:00:00.000Z',
    issuedAt: '2020-01-01T00:05:00.000Z',
    proof: 'token',
    rootFingerprint256: oldRoot,
    state: 'issued',
  };
  await kv.create(expired.serial, JSON.stringify(expired));
});

afterAll(async () => {
  await mesh?.close();
  await nc?.close();
  await Promise.all(replicas.map((p) => p.stop()));
  await nats?.dispose();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

describe('root rotation across two replicas', () => {
  let newRoot: string;
  let winner: string;

  it('counts only live certificates before the rotation: not superseded, not revoked, not expired', async () => {
    expect(await liveCounts()).toEqual({ current: 2 });
  });

  it('lets exactly one of many concurrent `begin`s win; the others get MESH_CONFLICT naming the winner', async () => {
    const results = await Promise.allSettled(Array.from({ length: 16 }, () => mesh.rotateRoot('begin')));
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(ok).toHaveLength(1);
    winner = ok[0]!.instance;
    expect(ok[0]).toMatchObject({ phase: 'begin', rotating: true, startedBy: winner });
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as MeshError] : []));
    expect(refused).toHaveLength(15);
    for (const e of refused) {
      expect(e).toBeInstanceOf(MeshError);
      expect(e.code).toBe('MESH_CONFLICT');
      expect(e.message).toMatch(
        new RegExp(`^a root rotation is already in progress, started by ${winner} at \\d{4}-\\d\\d-\\d\\dT\\S+Z: `),
      );
    }
    // Requests go to either replica (queue group): the other one refused some of them from the lock.
    const loser = replicas.find((p) => !p.name.endsWith(winner))!;
    expect(loser.output.join('\n')).toMatch(/"msg":"root rotation not begun"/);

    // One new root: in the bundle, in the CA directory, and in every bundle published since.
    const bundle = await mesh.getTrustBundle();
    expect(bundle.roots).toHaveLength(2);
    newRoot = bundle.roots.find((r) => r.fingerprint256 !== oldRoot)!.fingerprint256;
    expect(bundle.roots.map((r) => r.fingerprint256)).toContain(oldRoot);
    expect(certificateInfo(readFileSync(join(caDir, CA_FILES.root), 'utf8')).fingerprint256).toBe(newRoot);
    await new Promise((r) => setTimeout(r, 500));
    expect(new Set(bundles.flatMap((b) => b.roots.map((r) => r.fingerprint256)))).toEqual(new Set([oldRoot, newRoot]));

    // Both replicas hold the new root (the other one reloaded the directory) and report who began.
    const answered = new Set<string>();
    await waitFor(
      async () => {
        const s = await mesh.rotateRoot('status');
        expect(s).toMatchObject({ rotating: true, startedBy: winner, startedAt: expect.any(String) });
        expect(s.roots.map((r) => [r.role, r.fingerprint256])).toEqual([
          ['current', newRoot],
          ['previous', oldRoot],
        ]);
        answered.add(s.instance);
        return answered.size === 2;
      },
      { timeoutMs: 10_000, what: 'both replicas to answer with both roots' },
    );
  });

  it('refuses `finish` while an un-renewed certificate lives under the old root, naming it; finishes once it renewed', async () => {
    expect(await liveCounts()).toEqual({ current: 0, previous: 2 });
    payment = await renew('payment', payment);
    expect(await liveCounts()).toEqual({ current: 1, previous: 1 });

    await expect(mesh.rotateRoot('finish')).rejects.toMatchObject({
      code: 'MESH_CONFLICT',
      message: expect.stringMatching(/^1 live certificate\(s\) still chain to the old root [0-9a-f]{16}…/),
      issues: [{ path: `certificates.${orders.serial}`, message: expect.stringContaining(spiffe('orders')) }],
    });
    const cli = await meshctl('ca', 'rotate', 'finish');
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/^error: 1 live certificate\(s\) still chain to the old root/);

    orders = await renew('orders', orders);
    expect(await liveCounts()).toEqual({ current: 2, previous: 0 });
    const finished = await mesh.rotateRoot('finish');
    expect(finished.roots).toEqual([expect.objectContaining({ role: 'current', fingerprint256: newRoot, liveCertificates: 2 })]);
    expect(finished.startedBy).toBeUndefined();
    expect((await mesh.getTrustBundle()).roots.map((r) => r.fingerprint256)).toEqual([newRoot]);
    // finish released the lock.
    expect((await kv.get(LOCK_KEY))?.operation ?? 'none').not.toBe('PUT');
  });

  it('refuses `begin` while another replica holds a fresh lock; takes over a stale one when no rotation is on disk', async () => {
    // A replica that crashed right after taking the lock, before it changed the CA directory.
    const crashed = { instance: 'ca-crashed', startedAt: new Date().toISOString() };
    const revision = await kv.create(LOCK_KEY, JSON.stringify(crashed));
    await expect(mesh.rotateRoot('begin')).rejects.toMatchObject({
      code: 'MESH_CONFLICT',
      message: expect.stringContaining(`a root rotation is already in progress, started by ca-crashed at ${crashed.startedAt}`),
    });
    expect((await mesh.getTrustBundle()).roots).toHaveLength(1);

    // Three minutes later (older than the 2-minute grace) the next begin takes it over.
    await kv.update(LOCK_KEY, JSON.stringify({ ...crashed, startedAt: new Date(Date.now() - 3 * 60_000).toISOString() }), revision);
    const begun = await mesh.rotateRoot('begin');
    expect(begun).toMatchObject({ rotating: true, startedBy: begun.instance });
    expect((await mesh.getTrustBundle()).roots).toHaveLength(2);
    const taker = replicas.find((p) => p.name.endsWith(begun.instance))!;
    expect(taker.output.join('\n')).toMatch(/"msg":"took over a stale root-rotation lock/);
  });
});
