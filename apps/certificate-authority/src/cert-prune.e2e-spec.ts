import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { buckets, type CaCertRecordV1, type RevocationListV1, streams, subjects, type TrustBundleV1 } from '@novamesh/contracts';
import { MeshManager } from '@novamesh/sdk';
import { type ManagedProcess, recreateStream, startCertificateAuthority, TestNats, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Pruning with the compiled app as processes and a real nats-server. The CA refuses lifetimes under
// 1 minute, so expired certificates are records written into mesh_ca_certs with a notAfter in the
// past (as the registry holds them once they expired), then revoked through the CA like any other.

const HOUR = 3_600_000;
const spiffe = (service: string) => `spiffe://novamesh.local/ns/default/svc/${service}`;

let nats: TestNats;
let nc: NatsConnection;
let kv: KV;
let mesh: MeshManager;
let caDir: string;
const replicas: ManagedProcess[] = [];

const serialOf = (n: number) => n.toString(16).padStart(32, '0');
function expiredRecord(n: number, expiredAgoMs: number): CaCertRecordV1 {
  const notAfter = Date.now() - expiredAgoMs;
  return {
    serial: serialOf(n),
    spiffeId: spiffe('legacy'),
    namespace: 'default',
    service: 'legacy',
    notBefore: new Date(notAfter - 24 * HOUR).toISOString(),
    notAfter: new Date(notAfter).toISOString(),
    issuedAt: new Date(notAfter - 24 * HOUR).toISOString(),
    proof: 'token',
    state: 'issued',
  };
}

async function revocationList(): Promise<string[]> {
  const jsm = await jetstreamManager(nc);
  return (await jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caRevoked }))?.json<RevocationListV1>().serials ?? [];
}

async function storedSerials(): Promise<string[]> {
  const keys: string[] = [];
  for await (const k of await kv.keys()) keys.push(k);
  return keys.sort();
}

beforeAll(async () => {
  nats = await TestNats.start();
  caDir = mkdtempSync(join(tmpdir(), 'novamesh-prune-ca-'));
  // The defaults: prune at start and every hour, keep records 24 h after expiry.
  replicas.push(await startCertificateAuthority({ natsUrl: nats.url, instance: 'ca1', caDir }));
  nc = await connect({ servers: nats.url });
  kv = await new Kvm(nc).open(buckets.caCerts);
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 10_000 });
  await mesh.initialize();
});

afterAll(async () => {
  await mesh?.close();
  await nc?.close();
  await Promise.all(replicas.map((p) => p.stop()));
  await nats?.dispose();
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

describe('pruning expired certificates', () => {
  it('drops expired serials from the revocation list and deletes records past the retention, at start and periodically', async () => {
    const live = await mesh.requestCertificate({ service: 'payment', token: (await mesh.createJoinToken('payment')).token });
    await mesh.revokeCertificate(live.serial, { reason: 'still valid: stays listed' });
    const revokedRecent = expiredRecord(1, HOUR); // revoked, expired 1 h ago: off the list, record kept (retention 2 h)
    const revokedOld = expiredRecord(2, 3 * HOUR); // revoked, expired 3 h ago: off the list, record deleted
    const issuedOld = expiredRecord(3, 3 * HOUR); // expired 3 h ago: deleted
    const issuedRecent = expiredRecord(4, HOUR); // expired 1 h ago: kept
    for (const r of [revokedRecent, revokedOld, issuedOld, issuedRecent]) await kv.create(r.serial, JSON.stringify(r));
    // Revoking an expired certificate is allowed: it lands on the list like any other.
    for (const r of [revokedRecent, revokedOld]) await mesh.revokeCertificate(r.serial);
    expect(await revocationList()).toEqual([live.serial, revokedRecent.serial, revokedOld.serial].sort());

    // A second replica with a 2-hour retention prunes when it starts, and every second after.
    replicas.push(
      await startCertificateAuthority({
        natsUrl: nats.url,
        instance: 'ca2',
        caDir,
        env: { CA_PRUNE_INTERVAL: '1s', CA_EXPIRED_CERT_RETENTION: '2h' },
      }),
    );
    await waitFor(async () => (await revocationList()).length === 1 && (await storedSerials()).length === 3, {
      timeoutMs: 10_000,
      what: 'the start-up prune',
    });
    expect(await revocationList()).toEqual([live.serial]);
    expect(await storedSerials()).toEqual([live.serial, revokedRecent.serial, issuedRecent.serial].sort());
    const listed = await mesh.listCertificates();
    expect(listed.map((c) => [c.serial, c.state]).sort()).toEqual(
      [
        [live.serial, 'revoked'],
        [revokedRecent.serial, 'revoked'],
        [issuedRecent.serial, 'expired'],
      ].sort(),
    );
    expect(replicas[1]!.output.join('\n')).toMatch(/"msg":"expired certificate records deleted"/);

    // Periodically: a record that expires past the retention later is deleted on a later run.
    const later = expiredRecord(5, 3 * HOUR);
    await kv.create(later.serial, JSON.stringify(later));
    await waitFor(async () => !(await storedSerials()).includes(later.serial), { timeoutMs: 10_000, what: 'the periodic prune' });
  });
});

describe('MESH_CA deleted and created again', () => {
  it('publishes the trust bundle again and rebuilds the revocation list from the certificate records', async () => {
    replicas.push(await startCertificateAuthority({ natsUrl: nats.url, instance: 'ca3', caDir, env: { CA_STREAM_RECHECK: '300ms' } }));
    const cert = await mesh.requestCertificate({ service: 'orders', token: (await mesh.createJoinToken('orders')).token });
    await mesh.revokeCertificate(cert.serial, { reason: 'key leaked' });
    const jsm = await jetstreamManager(nc);
    const bundle = async () =>
      (await jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caBundle }))?.json<TrustBundleV1>() ?? undefined;
    const rootsBefore = (await bundle())?.roots.map((r) => r.fingerprint256);
    const listBefore = await revocationList();
    expect(listBefore).toContain(cert.serial);

    // The stream holding the bundle and the only published copy of the revocation list is lost.
    await recreateStream(jsm, streams.ca);

    const back = await waitFor(
      async () => {
        const [b, list] = await Promise.all([bundle().catch(() => undefined), revocationList().catch(() => [])]);
        return b && list.length ? { roots: b.roots.map((r) => r.fingerprint256), list } : undefined;
      },
      { timeoutMs: 10_000, what: 'the bundle and revocation list in the new stream' },
    );
    expect(back.roots).toEqual(rootsBefore);
    expect(back.list).toEqual(listBefore);
    // The revoked certificate stays refused where it is checked: it is on the list again.
    expect(back.list).toContain(cert.serial);
  });

  it('rebuilds the revocation list at start when the stream was lost while no CA ran', async () => {
    const listBefore = await revocationList();
    expect(listBefore.length).toBeGreaterThan(0);
    await Promise.all(replicas.splice(0).map((p) => p.stop()));
    await recreateStream(await jetstreamManager(nc), streams.ca);
    replicas.push(await startCertificateAuthority({ natsUrl: nats.url, instance: 'ca4', caDir }));
    // Published before the CA reports ready: not an empty list, the one the records call for.
    expect(await revocationList()).toEqual(listBefore);
  });

  it('leaves a bundle another replica already published into the new stream (a rotation it made meanwhile) in place', async () => {
    await Promise.all(replicas.splice(0).map((p) => p.stop()));
    replicas.push(await startCertificateAuthority({ natsUrl: nats.url, instance: 'ca5', caDir, env: { CA_STREAM_RECHECK: '1500ms' } }));
    const jsm = await jetstreamManager(nc);
    const current = (await jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caBundle }))?.json<TrustBundleV1>();
    if (!current) throw new Error('no bundle published');
    const cert = await mesh.requestCertificate({ service: 'ledger', token: (await mesh.createJoinToken('ledger')).token });
    await mesh.revokeCertificate(cert.serial);
    const listBefore = await revocationList();
    expect(listBefore).toContain(cert.serial);
    // Another replica's bundle with a root this CA does not hold in memory (as after a rotation it
    // has not seen yet), published into the new stream before this CA notices the reset.
    const rotated: TrustBundleV1 = {
      ...current,
      roots: [
        ...current.roots,
        { pem: current.roots[0]?.pem ?? '', fingerprint256: 'ab'.repeat(32), notAfter: current.roots[0]?.notAfter ?? '' },
      ],
    };
    await recreateStream(jsm, streams.ca);
    await jetstream(nc).publish(subjects.caBundle, JSON.stringify(rotated));
    // The CA noticed the reset (the list is back) and left that bundle as it was.
    await waitFor(async () => (await revocationList().catch((): string[] => [])).includes(cert.serial), {
      timeoutMs: 10_000,
      what: 'the revocation list to be rebuilt',
    });
    await new Promise((r) => setTimeout(r, 500));
    const last = (await jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caBundle }))?.json<TrustBundleV1>();
    expect(last?.roots.map((r) => r.fingerprint256)).toEqual(rotated.roots.map((r) => r.fingerprint256));
    expect((await jsm.streams.info(streams.ca)).state.messages).toBe(2); // the bundle and the list, nothing republished over them
  });

  it('creates the stream again when it was deleted and nobody created it, with the bundle and the rebuilt revocation list', async () => {
    await Promise.all(replicas.splice(0).map((p) => p.stop()));
    replicas.push(await startCertificateAuthority({ natsUrl: nats.url, instance: 'ca6', caDir, env: { CA_STREAM_RECHECK: '300ms' } }));
    const cert = await mesh.requestCertificate({ service: 'billing', token: (await mesh.createJoinToken('billing')).token });
    await mesh.revokeCertificate(cert.serial);
    const jsm = await jetstreamManager(nc);
    const listBefore = await revocationList();
    expect(listBefore).toContain(cert.serial);
    const { created } = await jsm.streams.info(streams.ca);

    // Deleted and left deleted: the CA, which publishes into it, creates it again.
    await jsm.streams.delete(streams.ca);
    const list = await waitFor(
      async () => {
        const [b, l] = await Promise.all([
          jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caBundle }).catch(() => undefined),
          revocationList().catch((): string[] => []),
        ]);
        return b && l.length ? l : undefined;
      },
      // A generous bound: under a loaded CI machine nats-server has once taken over 10 s to answer
      // JetStream requests right after a stream was deleted; what is checked is that it happens.
      { timeoutMs: 30_000, what: 'the bundle and the revocation list in the stream the CA created again' },
    ).catch((e: Error) => {
      throw new Error(`${e.message}\n--- ca6, last lines ---\n${replicas[0]?.output.slice(-25).join('\n')}\n--- ${nats.diagnostics()}`);
    });
    expect(list).toEqual(listBefore);
    const info = await jsm.streams.info(streams.ca);
    expect(info.created).not.toBe(created);
    expect(info.config).toMatchObject({ subjects: [subjects.caBundle, subjects.caRevoked], max_msgs_per_subject: 1 });
    expect(replicas[0]?.output.join('\n')).toMatch(/"msg":"the stream was missing; created it again"/);
  });
});
