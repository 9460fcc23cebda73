import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { buckets, type CaCertRecordV1, streams } from '@novamesh/contracts';
import { MeshManager, type WorkloadCertificate } from '@novamesh/sdk';
import {
  freePort,
  type ManagedProcess,
  runMeshctl,
  startCertificateAuthority,
  startDiscovery,
  startPolicy,
  startProxyConfig,
  TestNats,
  TestRedis,
} from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// Drives the compiled meshctl (`npx tsc -b` first) against real NATS, Redis, one discovery, one
// policy, one certificate-authority and one proxy-config replica: `meshctl check` as an operator runs it.

let nats: TestNats;
let redis: TestRedis;
let nc: NatsConnection;
let mesh: MeshManager;
let caDir: string;
let policy: ManagedProcess;
const procs: ManagedProcess[] = [];
let env: NodeJS.ProcessEnv;
/** payment's certificate in use (renewed once). */
let payment: WorkloadCertificate;

const check = () => runMeshctl(['check'], env);
const lines = (stdout: string) => stdout.trimEnd().split('\n');

beforeAll(async () => {
  [nats, redis] = await Promise.all([TestNats.start(), TestRedis.start()]);
  caDir = mkdtempSync(join(tmpdir(), 'novamesh-check-ca-'));
  procs.push(await startDiscovery({ natsUrl: nats.url, redisUrl: redis.url, instance: 'd1' }));
  policy = await startPolicy({ natsUrl: nats.url, instance: 'p1' });
  procs.push(policy);
  // Workload certificates of 30 minutes: every one of them "expires within 1 hour".
  procs.push(
    await startCertificateAuthority({
      natsUrl: nats.url,
      instance: 'ca1',
      caDir,
      env: { CA_CERT_TTL: '30m', CA_METRICS_PORT: String(await freePort()) },
    }),
  );
  procs.push(await startProxyConfig({ natsUrl: nats.url, instance: 'pc1' }));
  nc = await connect({ servers: nats.url });
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 10_000 });
  await mesh.initialize();
  env = { NATS_URL: nats.url };
});

afterAll(async () => {
  await mesh?.close();
  await nc?.close();
  for (const p of procs.reverse()) await p.stop();
  await Promise.all([nats?.dispose(), redis?.dispose()]);
  if (caDir) rmSync(caDir, { recursive: true, force: true });
});

describe('meshctl check', () => {
  it('passes on a healthy mesh with no certificates yet, with one line per check', async () => {
    const r = await check();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = lines(r.stdout);
    expect(out).toEqual([
      'NATS',
      '----',
      expect.stringMatching(new RegExp(`^✔ NATS is reachable at ${nats.url} \\(nats-server \\d+\\.\\d+\\.\\d+\\)$`)),
      '',
      'control plane',
      '-------------',
      expect.stringMatching(/^✔ discovery is answering on mesh\.v1\.discovery\.query \(\d+ ms\)$/),
      expect.stringMatching(/^✔ policy service is answering on mesh\.v1\.policy\.list \(\d+ ms\)$/),
      expect.stringMatching(
        /^✔ certificate authority is answering on mesh\.v1\.ca\.info \(\d+ ms; replica ca1, trust domain novamesh\.local\)$/,
      ),
      expect.stringMatching(/^✔ proxy-config is answering on mesh\.v1\.proxy\.status \(\d+ ms\)$/),
      '',
      'streams',
      '-------',
      expect.stringMatching(
        /^✔ 6 of 6 streams of the mesh exist: MESH_REGISTRY \(\d+ messages?\), MESH_ENDPOINTS \(\d+ messages?\), MESH_DEADLETTER \(\d+ messages?\), MESH_CONFIG \(\d+ messages?\), MESH_CA \(\d+ messages?\), MESH_PROXY \(\d+ messages?\)$/,
      ),
      '',
      'data plane',
      '----------',
      '✔ no sidecar has reported yet',
      '',
      'certificate authority',
      '---------------------',
      expect.stringMatching(/^✔ trust bundle for novamesh\.local holds 1 root \(updated \S+\)$/),
      expect.stringMatching(/^✔ root [0-9a-f]{16} is valid until \S+ \(36[45]\d days\)$/),
      expect.stringMatching(/^✔ intermediate [0-9a-f]{16} is valid until \S+ \((364|365) days\)$/),
      '',
      'workload certificates',
      '---------------------',
      '✔ 0 issued by this CA: 0 valid, 0 expired',
      '✔ no certificate in use has expired or expires within 1 hour',
      '✔ 0 revoked (0 on the published revocation list)',
      '',
      'Status check results are ✔  (13 passed, 0 warnings, 0 failed)',
    ]);
    // NO_COLOR (runMeshctl sets it) and a pipe: no escape sequences.
    expect(r.stdout).not.toContain('\x1b[');
  });

  it('warns about certificates in use that expired or expire within 1 hour (not renewed ones), counts revocations, and still exits 0', async () => {
    const token = (await mesh.createJoinToken('payment', { uses: 2 })).token;
    const a = await mesh.requestCertificate({ service: 'payment', token });
    const b = await mesh.requestCertificate({ service: 'payment', token });
    await mesh.revokeCertificate(a.serial, { reason: 'check drill' });
    // b renews: b is superseded and, though it expires within 1 hour too, only its successor is in use.
    payment = await mesh.requestCertificate({ service: 'payment', certificatePem: b.certificatePem, keyPem: b.keyPem });
    // Expired certificates, as the registry keeps them after their notAfter: legacy renewed once
    // (the first is superseded), then stopped renewing.
    const kv = await new Kvm(nc).open(buckets.caCerts);
    const older: CaCertRecordV1 = {
      serial: 'aa'.repeat(16),
      spiffeId: 'spiffe://novamesh.local/ns/default/svc/legacy',
      namespace: 'default',
      service: 'legacy',
      notBefore: '2019-12-31T00:00:00.000Z',
      notAfter: '2020-01-01T00:00:00.000Z',
      issuedAt: '2019-12-31T00:05:00.000Z',
      proof: 'token',
      supersededBy: 'ab'.repeat(16),
      state: 'issued',
    };
    await kv.create(older.serial, JSON.stringify(older));
    const old: CaCertRecordV1 = {
      serial: 'ab'.repeat(16),
      spiffeId: 'spiffe://novamesh.local/ns/default/svc/legacy',
      namespace: 'default',
      service: 'legacy',
      notBefore: '2020-01-01T00:00:00.000Z',
      notAfter: '2020-01-02T00:00:00.000Z',
      issuedAt: '2020-01-01T00:05:00.000Z',
      proof: 'certificate',
      renewedFrom: older.serial,
      state: 'issued',
    };
    await kv.create(old.serial, JSON.stringify(old));

    const r = await check();
    expect(r.code, r.stdout).toBe(0);
    const out = lines(r.stdout);
    expect(out).toContain('✔ 5 issued by this CA: 2 valid, 2 expired');
    const expired = out.indexOf('‼ 1 certificate has expired without being renewed');
    expect(expired, r.stdout).toBeGreaterThan(0);
    expect(out[expired + 1]).toBe(`    ${old.serial}  ${old.spiffeId}  not after ${old.notAfter}`);
    expect(out[expired + 2]).not.toMatch(/^ {4}/);
    const soon = out.indexOf('‼ 1 certificate expires within 1 hour and has not been renewed');
    expect(soon, r.stdout).toBeGreaterThan(0);
    expect(out[soon + 1]).toMatch(/^ {4}[0-9a-f]+ {2}spiffe:\/\/novamesh\.local\/ns\/default\/svc\/payment {2}not after \S+$/);
    expect(out[soon + 1]).not.toContain(b.serial);
    expect(out[soon + 2]).not.toMatch(/^ {4}/);
    expect(out).toContain('✔ 1 revoked (1 on the published revocation list)');
    expect(out.at(-1)).toBe('Status check results are ‼  (12 passed, 2 warnings, 0 failed)');
  });

  it('fails with a clear line and exit code 1 when the policy service is stopped', async () => {
    await policy.stop();
    const r = await check();
    expect(r.code).toBe(1);
    const out = lines(r.stdout);
    const at = out.indexOf('✘ policy service is not answering on mesh.v1.policy.list: no responders');
    expect(at, r.stdout).toBeGreaterThan(0);
    expect(out[at + 1]).toBe('    start a policy service replica');
    expect(out).toContainEqual(expect.stringMatching(/^✔ discovery is answering/));
    expect(out.at(-1)).toMatch(/^Status check results are ✘ {2}\(\d+ passed, 2 warnings, 1 failed\)$/);
  });

  it('fails for a stream of the mesh that is missing, saying who creates it again, until it is back', async () => {
    const jsm = await jetstreamManager(nc);
    const { config } = await jsm.streams.info(streams.deadLetter);
    // Nothing recreates the dead-letter stream before discovery restarts: it stays missing.
    await jsm.streams.delete(streams.deadLetter);
    try {
      const r = await check();
      expect(r.code).toBe(1);
      const out = lines(r.stdout);
      expect(out).toContainEqual(expect.stringMatching(/^✔ 5 of 6 streams of the mesh exist: MESH_REGISTRY /));
      const at = out.indexOf('✘ stream MESH_DEADLETTER is missing');
      expect(at, r.stdout).toBeGreaterThan(0);
      expect(out[at + 1]).toBe('    discovery creates it again when it starts: restart a discovery replica');
    } finally {
      await jsm.streams.add(config);
    }
    expect(lines((await check()).stdout)).toContainEqual(expect.stringMatching(/^✔ 6 of 6 streams of the mesh exist/));
  });

  it('fails at once, with exit code 1, when NATS is not reachable', async () => {
    const port = await freePort();
    const r = await runMeshctl(['check', '--timeout', '1s'], { NATS_URL: `nats://127.0.0.1:${port}` });
    expect(r.code).toBe(1);
    const out = lines(r.stdout);
    expect(out[2]).toMatch(new RegExp(`^✘ NATS is not reachable at nats://127\\.0\\.0\\.1:${port}: `));
    expect(out.at(-1)).toBe('Status check results are ✘  (0 passed, 0 warnings, 1 failed)');
  });

  it('shows a root rotation in progress with live certificates per root and the next step', async () => {
    const begin = await runMeshctl(['ca', 'rotate', 'begin'], env);
    expect(begin.code, begin.stderr).toBe(0);
    const roots = (await mesh.getTrustBundle()).roots.map((r) => r.fingerprint256.slice(0, 16));
    const [newRoot, oldRoot] = roots;
    // The only live certificate is payment's renewed one, under the old root.
    let out = lines((await check()).stdout);
    let at = out.findIndex((l) => l.startsWith('‼ root rotation in progress'));
    expect(out.slice(at, at + 4), out.join('\n')).toEqual([
      `‼ root rotation in progress: 0 live certificates under the new root ${newRoot}, 1 under the old root ${oldRoot}`,
      expect.stringMatching(/^ {4}begun by ca1 at \S+Z$/),
      '    workloads re-issue under the new root on their own; follow with `meshctl ca rotate status`,',
      '    then run `meshctl ca rotate finish` once the old root has no live certificates (it is refused until then)',
    ]);

    // payment renews under the new root: nothing left under the old one, time to finish.
    await mesh.requestCertificate({ service: 'payment', certificatePem: payment.certificatePem, keyPem: payment.keyPem });
    out = lines((await check()).stdout);
    at = out.findIndex((l) => l.startsWith('‼ root rotation in progress'));
    expect(out.slice(at, at + 3), out.join('\n')).toEqual([
      `‼ root rotation in progress: 1 live certificate under the new root ${newRoot}, 0 under the old root ${oldRoot}`,
      expect.stringMatching(/^ {4}begun by ca1 at \S+Z$/),
      '    no live certificate uses the old root any more: run `meshctl ca rotate finish` to drop it from the trust bundle',
    ]);
    expect(out[at + 3]).not.toMatch(/^ {4}/);

    const finish = await runMeshctl(['ca', 'rotate', 'finish'], env);
    expect(finish.code, finish.stderr).toBe(0);
    expect(lines((await check()).stdout).some((l) => l.includes('root rotation'))).toBe(false);
  });
});
