import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { CA_FILES, certificateInfo, createCsr } from '@novamesh/ca';
import { MeshError, type RevocationListV1, streams, subjects, type TrustBundleV1 } from '@novamesh/contracts';
import { MeshManager, type WorkloadCertificate } from '@novamesh/sdk';
import { type ManagedProcess, runMeshctl, startCertificateAuthority, TestNats, waitFor } from '@novamesh/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const PASSPHRASE = 'correct-horse-battery-staple-7f3a';
const TRUST_DOMAIN = 'novamesh.local';

let nats: TestNats;
let nc: NatsConnection;
let mesh: MeshManager;
let caDir: string;
let work: string;
/** Every CA process started, also those stopped since: their whole output is checked at the end. */
const started: ManagedProcess[] = [];
let running: ManagedProcess[] = [];
/** Every token handed out, to check none of them reaches a log line. */
const tokensSeen: string[] = [];

async function startReplica(instance: string): Promise<ManagedProcess> {
  const p = await startCertificateAuthority({ natsUrl: nats.url, instance, caDir, env: { CA_PASSPHRASE: PASSPHRASE } });
  started.push(p);
  running.push(p);
  return p;
}

beforeAll(async () => {
  nats = await TestNats.start();
  caDir = mkdtempSync(join(tmpdir(), 'novamesh-ca-'));
  work = mkdtempSync(join(tmpdir(), 'novamesh-ca-files-'));
  // Sequentially: the first replica creates the CA, the second loads it.
  await startReplica('ca1');
  await startReplica('ca2');
  nc = await connect({ servers: nats.url });
  mesh = new MeshManager({ servers: nats.url, heartbeat: false, timeoutMs: 10_000 });
  await mesh.initialize();
});

afterAll(async () => {
  await mesh?.close();
  await nc?.close();
  await Promise.all(running.map((p) => p.stop()));
  await nats?.dispose();
  for (const d of [caDir, work]) if (d) rmSync(d, { recursive: true, force: true });
});

async function token(service: string, opts: { namespace?: string; ttl?: string; uses?: number } = {}): Promise<string> {
  const t = (await mesh.createJoinToken(service, opts)).token;
  tokensSeen.push(t);
  return t;
}

async function refusal(p: Promise<unknown>): Promise<MeshError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected a refusal').toBeInstanceOf(MeshError);
  return e as MeshError;
}

type SignReply =
  | { ok: true; serial: string }
  | { ok: false; error: { code: string; message: string; issues: { path: string; message: string }[] } };

/** A raw `mesh.v1.ca.sign` request, as a client in any language would send it. */
async function rawSign(body: unknown): Promise<SignReply> {
  return (await nc.request(subjects.ca('sign'), JSON.stringify(body), { timeout: 10_000 })).json<SignReply>();
}

const spiffe = (service: string, namespace = 'default') => `spiffe://${TRUST_DOMAIN}/ns/${namespace}/svc/${service}`;

function writeFiles(name: string, cert: WorkloadCertificate): { leaf: string; chain: string; bundle: string } {
  const files = { leaf: join(work, `${name}.pem`), chain: join(work, `${name}-chain.pem`), bundle: join(work, `${name}-bundle.pem`) };
  writeFileSync(files.leaf, cert.certificatePem);
  writeFileSync(files.chain, cert.chainPem);
  writeFileSync(files.bundle, cert.trustBundlePem);
  return files;
}

describe('issuance with a join token', () => {
  let first: WorkloadCertificate;

  it('issues a chain that openssl verifies against the bundle, with the SPIFFE ID as URI SAN', async () => {
    first = await mesh.requestCertificate({ service: 'payment', token: await token('payment') });
    expect(first.spiffeId).toBe(spiffe('payment'));
    expect(first.keyPem).toMatch(/BEGIN PRIVATE KEY/);
    const f = writeFiles('payment', first);
    const verified = await run('openssl', ['verify', '-CAfile', f.bundle, '-untrusted', f.chain, f.leaf]);
    expect(verified.stdout.trim()).toBe(`${f.leaf}: OK`);
    const text = (await run('openssl', ['x509', '-in', f.leaf, '-noout', '-text'])).stdout;
    expect(text).toContain(`URI:${spiffe('payment')}`);
    expect(text).toContain('DNS:payment.default.svc');
    const info = certificateInfo(first.certificatePem);
    expect(info.serial).toBe(first.serial);
    // Default lifetime 24 h (plus the 5 min backdate).
    expect(info.notAfter - info.notBefore).toBe(24 * 3_600_000 + 5 * 60_000);
  });

  it('refuses the same single-use token a second time: "used"', async () => {
    const t = await token('payment');
    await mesh.requestCertificate({ service: 'payment', token: t });
    const e = await refusal(mesh.requestCertificate({ service: 'payment', token: t }));
    expect(e.code).toBe('MESH_FORBIDDEN');
    expect(e.issues).toEqual([{ path: 'proof.token', message: expect.stringMatching(/already been used/) }]);
  });

  it('lets a token be used exactly `uses` times across both replicas, even when requests race', async () => {
    for (const uses of [1, 2]) {
      const t = await token('payment', { uses });
      const results = await Promise.allSettled(Array.from({ length: 8 }, () => mesh.requestCertificate({ service: 'payment', token: t })));
      const ok = results.filter((r) => r.status === 'fulfilled');
      expect(ok).toHaveLength(uses);
      for (const r of results) if (r.status === 'rejected') expect((r.reason as MeshError).issues[0]?.message).toMatch(/already been used/);
    }
  });

  it('refuses an expired token', async () => {
    const t = await token('payment', { ttl: '1s' });
    await new Promise((r) => setTimeout(r, 1_300));
    const e = await refusal(mesh.requestCertificate({ service: 'payment', token: t }));
    expect(e.code).toBe('MESH_FORBIDDEN');
    expect(e.issues[0]).toMatchObject({ path: 'proof.token', message: expect.stringMatching(/^expired at /) });
  });

  it('refuses a token issued for another service or namespace, and an unknown token', async () => {
    const t = await token('payment');
    const other = await refusal(mesh.requestCertificate({ service: 'orders', token: t }));
    expect(other.issues[0]).toMatchObject({
      path: 'identity',
      message: expect.stringMatching(/issued for namespace "default" service "payment"/),
    });
    const ns = await refusal(mesh.requestCertificate({ service: 'payment', namespace: 'prod', token: t }));
    expect(ns.issues[0]?.path).toBe('identity');
    const unknown = await refusal(mesh.requestCertificate({ service: 'payment', token: `nmjt_${'A'.repeat(43)}` }));
    expect(unknown.issues[0]).toMatchObject({ path: 'proof.token', message: 'is not a known join token' });
    // The mismatches did not use the token up.
    await mesh.requestCertificate({ service: 'payment', token: t });
  });

  it('refuses an RSA-1024 CSR and a tampered CSR, without using up the token', async () => {
    const t = await token('payment');
    const identity = { namespace: 'default', service: 'payment' };
    const weak = await createCsr({ spiffeId: spiffe('payment'), keyPair: { kind: 'rsa', bits: 1024 } });
    const r1 = await rawSign({ csr: weak.csrPem, identity, proof: { token: t } });
    expect(r1).toMatchObject({ ok: false, error: { code: 'MESH_INVALID' } });
    if (!r1.ok) expect(r1.error.issues).toContainEqual({ path: 'csr.key', message: 'RSA 1024 bits is weaker than 2048' });

    const good = await createCsr({ spiffeId: spiffe('payment') });
    const der = Buffer.from(good.csrPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 0x01; // last byte of the signature
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    const r2 = await rawSign({ csr: tampered, identity, proof: { token: t } });
    expect(r2).toMatchObject({ ok: false, error: { code: 'MESH_INVALID' } });
    if (!r2.ok) expect(r2.error.issues).toContainEqual({ path: 'csr.signature', message: 'does not verify' });

    const wrongSan = await createCsr({ spiffeId: spiffe('orders') });
    const r3 = await rawSign({ csr: wrongSan.csrPem, identity, proof: { token: t } });
    if (r3.ok) throw new Error('a CSR for another SPIFFE ID was signed');
    expect(r3.error.issues[0]).toMatchObject({ path: 'csr.san', message: expect.stringMatching(/does not match the identity/) });

    const ok = await rawSign({ csr: good.csrPem, identity, proof: { token: t } });
    expect(ok.ok).toBe(true);
  });

  it('refuses malformed requests with the field named', async () => {
    const r = await rawSign({ csr: 'nope', identity: { namespace: 'default', service: 'Pay ment' }, proof: {} });
    if (r.ok) throw new Error('signed a malformed request');
    expect(r.error.code).toBe('MESH_INVALID');
    expect(r.error.issues.map((i) => i.path).sort()).toEqual(['csr', 'identity.service', 'proof']);
  });
});

describe('renewal, revocation', () => {
  let current: WorkloadCertificate;

  beforeAll(async () => {
    current = await mesh.requestCertificate({ service: 'inventory', token: await token('inventory') });
  });

  it('renews with a valid certificate of the same identity and its key (fresh key, new serial)', async () => {
    const renewed = await mesh.requestCertificate({ service: 'inventory', certificatePem: current.certificatePem, keyPem: current.keyPem });
    expect(renewed.spiffeId).toBe(spiffe('inventory'));
    expect(renewed.serial).not.toBe(current.serial);
    expect(renewed.keyPem).not.toBe(current.keyPem);
    const listed = await mesh.listCertificates({ service: 'inventory' });
    expect(listed.find((c) => c.serial === renewed.serial)).toMatchObject({
      proof: 'certificate',
      renewedFrom: current.serial,
      state: 'issued',
    });
    current = renewed;
  });

  it('refuses renewal for another identity, and without possession of the key', async () => {
    const other = await refusal(
      mesh.requestCertificate({ service: 'payment', certificatePem: current.certificatePem, keyPem: current.keyPem }),
    );
    expect(other.issues[0]).toMatchObject({ path: 'identity', message: expect.stringMatching(/is for .*inventory, not .*payment/) });
    const stranger = await createCsr({ spiffeId: spiffe('inventory') });
    const stolen = await refusal(
      mesh.requestCertificate({ service: 'inventory', certificatePem: current.certificatePem, keyPem: stranger.keyPem }),
    );
    expect(stolen.issues[0]?.path).toBe('proof.signature');
  });

  it('refuses renewal with a certificate from another CA', async () => {
    const otherDir = mkdtempSync(join(tmpdir(), 'novamesh-ca-other-'));
    try {
      const { loadOrCreateCa, signWorkloadCsr } = await import('@novamesh/ca');
      const foreign = await loadOrCreateCa({ dir: otherDir, trustDomain: TRUST_DOMAIN });
      const csr = await createCsr({ spiffeId: spiffe('inventory') });
      const issued = await signWorkloadCsr({
        csrPem: csr.csrPem,
        issuer: foreign.intermediate,
        chainPems: foreign.chainPems,
        identity: { trustDomain: TRUST_DOMAIN, namespace: 'default', service: 'inventory' },
      });
      const e = await refusal(mesh.requestCertificate({ service: 'inventory', certificatePem: issued.certPem, keyPem: csr.keyPem }));
      expect(e.issues[0]).toMatchObject({ path: 'proof.certificatePem', message: expect.stringMatching(/untrusted|does not verify/) });
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('revokes: the serial is on mesh.v1.ca.revoked, listed as revoked, and can no longer renew', async () => {
    const revoked = await mesh.revokeCertificate(current.serial, { reason: 'key compromise drill' });
    expect(revoked).toMatchObject({ ok: true, serial: current.serial, alreadyRevoked: false });
    expect((await mesh.revokeCertificate(current.serial)).alreadyRevoked).toBe(true);

    const abort = new AbortController();
    const lists: RevocationListV1[] = [];
    void (async () => {
      for await (const l of mesh.watchRevocations({ signal: abort.signal })) lists.push(l);
    })();
    await waitFor(() => lists.at(-1)?.serials.includes(current.serial), { what: 'the serial on the revocation list' });
    abort.abort();

    const [listed] = await mesh.listCertificates({ service: 'inventory', state: 'revoked' });
    expect(listed).toMatchObject({ serial: current.serial, state: 'revoked', revocationReason: 'key compromise drill' });
    const e = await refusal(
      mesh.requestCertificate({ service: 'inventory', certificatePem: current.certificatePem, keyPem: current.keyPem }),
    );
    expect(e.code).toBe('MESH_FORBIDDEN');
    expect(e.issues[0]).toMatchObject({ path: 'proof.certificatePem', message: expect.stringMatching(/was revoked at/) });
    const unknown = await refusal(mesh.revokeCertificate('ab'.repeat(16)));
    expect(unknown.code).toBe('MESH_NOT_FOUND');
  });
});

describe('meshctl', () => {
  it('creates a token, lists certificates and revokes one', async () => {
    const env = { NATS_URL: nats.url };
    const created = await runMeshctl(['token', 'create', '--service', 'shipping', '--ttl', '10m'], env);
    expect(created.code, created.stderr).toBe(0);
    const t = created.stdout.trim();
    tokensSeen.push(t);
    expect(t).toMatch(/^nmjt_[A-Za-z0-9_-]{43}$/);
    expect(created.stderr).toMatch(/namespace default service shipping: 1 use\(s\), expires /);
    const cert = await mesh.requestCertificate({ service: 'shipping', token: t });

    const list = await runMeshctl(['cert', 'list', '--service', 'shipping'], env);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/^SERIAL\s+IDENTITY\s+NOT-AFTER\s+STATE$/);
    expect(list.stdout).toMatch(new RegExp(`${cert.serial}\\s+${spiffe('shipping')}\\s+\\S+\\s+issued`));

    const revoke = await runMeshctl(['cert', 'revoke', cert.serial], env);
    expect(revoke.stdout).toBe(`certificate ${cert.serial} revoked\n`);
    const json = await runMeshctl(['cert', 'list', '--service', 'shipping', '-o', 'json'], env);
    expect(JSON.parse(json.stdout)[0]).toMatchObject({ serial: cert.serial, state: 'revoked' });
    const missing = await runMeshctl(['cert', 'revoke', 'ab'.repeat(16)], env);
    expect(missing.code).toBe(4);
    const bad = await runMeshctl(['token', 'create', '--service', 'shipping', '--ttl', '30d'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/ttl/);
  });
});

describe('the CA on disk and across restarts', () => {
  it('keeps private keys 0600 and encrypted with the passphrase', () => {
    for (const f of [CA_FILES.rootKey, CA_FILES.intermediateKey]) {
      expect(statSync(join(caDir, f)).mode & 0o777, f).toBe(0o600);
      expect(readFileSync(join(caDir, f), 'utf8'), f).toMatch(/BEGIN ENCRYPTED PRIVATE KEY/);
    }
  });

  it('keeps the same root and intermediate after every replica restarts, and does not republish the bundle', async () => {
    const jsm = await jetstreamManager(nc);
    const before = await mesh.getTrustBundle();
    const beforeSeq = (await jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caBundle }))?.seq;
    const certBefore = await mesh.requestCertificate({ service: 'payment', token: await token('payment') });
    await Promise.all(running.map((p) => p.stop()));
    running = [];
    await startReplica('ca3');
    expect(started.at(-1)?.output.join('\n')).toMatch(/"msg":"CA loaded"/);

    const after: TrustBundleV1 = await mesh.getTrustBundle();
    expect(after.roots.map((r) => r.fingerprint256)).toEqual(before.roots.map((r) => r.fingerprint256));
    expect((await jsm.streams.getMessage(streams.ca, { last_by_subj: subjects.caBundle }))?.seq).toBe(beforeSeq);
    const certAfter = await mesh.requestCertificate({ service: 'payment', token: await token('payment') });
    const intermediate = (c: WorkloadCertificate) => c.chainPem.slice(c.certificatePem.length);
    expect(intermediate(certAfter)).toBe(intermediate(certBefore));
    expect(certAfter.trustBundlePem).toBe(certBefore.trustBundlePem);
  });

  it('never prints the passphrase, a join token or a private key', () => {
    const output = started.map((p) => p.output.join('\n')).join('\n');
    expect(output).toMatch(/certificate issued/);
    expect(output).not.toContain(PASSPHRASE);
    expect(output).not.toMatch(/PRIVATE KEY/);
    expect(tokensSeen.length).toBeGreaterThan(5);
    for (const t of tokensSeen) expect(output).not.toContain(t);
  });
});
