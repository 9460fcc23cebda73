import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CertifiedKey, createCsr, createIntermediateCa, createRootCa, signWorkloadCsr } from '@novamesh/ca';
import { MeshValidationError } from '@novamesh/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOwnCertificates, type OwnCertificatesChange, watchOwnCertificates } from './own-certificates';

const TD = 'novamesh.local';
const ID = { trustDomain: TD, namespace: 'shop', service: 'payment' };
const dir = mkdtempSync(join(tmpdir(), 'novamesh-identity-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function ca(): Promise<{ root: CertifiedKey; intermediate: CertifiedKey }> {
  const root = await createRootCa({ trustDomain: TD });
  return { root, intermediate: await createIntermediateCa({ root, trustDomain: TD }) };
}
async function workload(c: { root: CertifiedKey; intermediate: CertifiedKey }, lifetimeMs = 3_600_000) {
  const { csrPem, keyPem } = await createCsr({ spiffeId: 'spiffe://novamesh.local/ns/shop/svc/payment' });
  const issued = await signWorkloadCsr({
    csrPem,
    issuer: c.intermediate,
    chainPems: [c.intermediate.certPem, c.root.certPem],
    identity: ID,
    lifetimeMs,
  });
  return { ...issued, keyPem };
}
/** Writes cert/key/ca files under a name; returns their paths. */
function files(name: string, f: { cert: string; key: string; ca: string }) {
  const paths = { certPath: join(dir, `${name}.crt`), keyPath: join(dir, `${name}.key`), caPath: join(dir, `${name}-ca.crt`) };
  writeFileSync(paths.certPath, f.cert);
  writeFileSync(paths.keyPath, f.key);
  writeFileSync(paths.caPath, f.ca);
  return paths;
}
async function refusal(p: Promise<unknown>): Promise<{ path: string; message: string }[]> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(MeshValidationError);
  return (e as MeshValidationError).issues;
}

let mesh: { root: CertifiedKey; intermediate: CertifiedKey };
let other: { root: CertifiedKey; intermediate: CertifiedKey };
let cert: Awaited<ReturnType<typeof workload>>;
beforeAll(async () => {
  [mesh, other] = await Promise.all([ca(), ca()]);
  cert = await workload(mesh);
});

describe('loadOwnCertificates', () => {
  it('accepts a chain that verifies to the CA file, with the matching key', async () => {
    const paths = files('good', { cert: cert.chainPem, key: cert.keyPem, ca: mesh.root.certPem });
    const own = await loadOwnCertificates(paths);
    expect(own).toMatchObject({ spiffeId: 'spiffe://novamesh.local/ns/shop/svc/payment', serial: cert.serial });
    expect(own.notAfter.getTime()).toBe(Math.floor(cert.notAfter / 1000) * 1000);
    expect(own.chainPem).toContain(mesh.intermediate.certPem.trim());
  });

  it('names the key file when the key belongs to another certificate', async () => {
    const stranger = await workload(mesh);
    const paths = files('mismatch', { cert: cert.chainPem, key: stranger.keyPem, ca: mesh.root.certPem });
    expect(await refusal(loadOwnCertificates(paths))).toEqual([
      { path: paths.keyPath, message: `does not match the certificate in ${paths.certPath} (O=novamesh.local, OU=shop, CN=payment)` },
    ]);
  });

  it('names the CA file when the chain does not verify to it', async () => {
    const paths = files('other-ca', { cert: cert.chainPem, key: cert.keyPem, ca: other.root.certPem });
    const [issue] = await refusal(loadOwnCertificates(paths));
    expect(issue?.path).toBe(paths.caPath);
    expect(issue?.message).toMatch(/^does not contain the issuer of .*Intermediate.*: the chain does not verify to this CA$/);
    // Without the intermediate in the certificate file, the leaf's issuer is missing too.
    const leafOnly = files('leaf-only', { cert: cert.certPem, key: cert.keyPem, ca: mesh.root.certPem });
    expect((await refusal(loadOwnCertificates(leafOnly)))[0]?.message).toMatch(
      /^does not contain the issuer of O=novamesh.local, OU=shop, CN=payment \(issued by .*Intermediate CA\)/,
    );
  });

  it('names the certificate file when it has expired', async () => {
    const paths = files('expired', { cert: cert.chainPem, key: cert.keyPem, ca: mesh.root.certPem });
    const issues = await refusal(loadOwnCertificates({ ...paths, now: cert.notAfter + 1_000 }));
    expect(issues).toEqual([
      {
        path: paths.certPath,
        message: `certificate 1 (O=novamesh.local, OU=shop, CN=payment) expired at ${new Date(Math.floor(cert.notAfter / 1000) * 1000).toISOString()}`,
      },
    ]);
  });

  it('lists every unreadable or unparsable file at once', async () => {
    const paths = files('garbage', { cert: 'not a certificate', key: 'not a key', ca: mesh.root.certPem });
    const issues = await refusal(loadOwnCertificates({ ...paths, caPath: join(dir, 'missing.crt') }));
    expect(issues).toEqual([
      { path: join(dir, 'missing.crt'), message: expect.stringMatching(/^cannot be read: ENOENT/) },
      { path: paths.certPath, message: 'contains no PEM certificate (-----BEGIN CERTIFICATE-----)' },
      { path: paths.keyPath, message: expect.stringMatching(/^is not a PEM private key: /) },
    ]);
  });
});

describe('watchOwnCertificates', () => {
  it('reloads changed files, and keeps the old certificates when new ones fail the checks', async () => {
    const paths = files('watched', { cert: cert.chainPem, key: cert.keyPem, ca: mesh.root.certPem });
    const changes: OwnCertificatesChange[] = [];
    const watcher = await watchOwnCertificates(paths, (c) => changes.push(c), { debounceMs: 50 });
    try {
      const seen: string[] = [];
      watcher.subscribe((c) => seen.push(c));
      const next = await workload(mesh);
      writeFileSync(paths.keyPath, next.keyPem);
      writeFileSync(paths.certPath, next.chainPem);
      await expect.poll(() => watcher.current().serial, { timeout: 5_000 }).toBe(next.serial);
      expect(seen).toContain('certificate');
      // A key that does not match: refused with the reason, the previous pair stays in use.
      writeFileSync(paths.keyPath, cert.keyPem);
      await expect.poll(() => changes.some((c) => !c.ok), { timeout: 5_000 }).toBe(true);
      const refused = changes.find((c) => !c.ok);
      expect(refused?.ok === false && refused.error.issues[0]).toMatchObject({ path: paths.keyPath, message: /does not match/ });
      expect(watcher.current().serial).toBe(next.serial);
    } finally {
      watcher.close();
    }
  });
});
