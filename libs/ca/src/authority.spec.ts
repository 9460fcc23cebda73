import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MeshValidationError } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { openssl, opensslDates, PAYMENT, put, TD, tempDir, testCa } from './ca.spec-helper';
import { certificateInfo, createCsr, createIntermediateCa, createRootCa, signWorkloadCsr, verifyChain } from './index';

const DAY = 86_400_000;
const MIN = 60_000;

describe('createRootCa / createIntermediateCa', () => {
  it('makes a 10-year P-256 root and a 1-year pathLen-0 intermediate that openssl accepts', async () => {
    const now = Date.now();
    const ca = await testCa(TD, now);
    const dir = put(tempDir(), { 'root.pem': ca.root.certPem, 'intermediate.pem': ca.intermediate.certPem });

    const root = openssl(['x509', '-text', '-noout', '-in', 'root.pem'], { cwd: dir }).out;
    expect(root).toMatch(/Basic Constraints: critical\s+CA:TRUE\n/);
    expect(root).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(root).toContain('X509v3 Subject Key Identifier');
    expect(root).toContain('ASN1 OID: prime256v1');
    expect(root).toContain('Signature Algorithm: ecdsa-with-SHA256');
    expect(root).toContain('Subject: O = novamesh.local, CN = Novamesh Root CA');

    const inter = openssl(['x509', '-text', '-noout', '-in', 'intermediate.pem'], { cwd: dir }).out;
    expect(inter).toMatch(/Basic Constraints: critical\s+CA:TRUE, pathlen:0/);
    expect(inter).toMatch(/Key Usage: critical\s+Certificate Sign, CRL Sign/);
    expect(inter).toMatch(/Name Constraints: critical\s+Permitted:\s+URI:novamesh\.local\n/);
    const rootSki = /Subject Key Identifier:\s+([0-9A-F:]+)/.exec(root)?.[1];
    expect(rootSki).toBeDefined();
    expect(inter).toMatch(new RegExp(`Authority Key Identifier:\\s+(keyid:)?${rootSki}`));
    expect(openssl(['verify', '-CAfile', 'root.pem', 'intermediate.pem'], { cwd: dir }).out).toContain('intermediate.pem: OK');

    // Validity spans as openssl reads them: backdated 5 min, then 3650 / 365 days from now (second precision).
    const r = opensslDates(dir, 'root.pem');
    const i = opensslDates(dir, 'intermediate.pem');
    expect(Math.abs(r.notBefore - (now - 5 * MIN))).toBeLessThan(1000);
    expect(Math.abs(r.notAfter - (now + 3650 * DAY))).toBeLessThan(1000);
    expect(Math.abs(i.notBefore - (now - 5 * MIN))).toBeLessThan(1000);
    expect(Math.abs(i.notAfter - (now + 365 * DAY))).toBeLessThan(1000);
  });

  it('uses random positive 16-byte serials', async () => {
    const a = certificateInfo((await createRootCa({ trustDomain: TD })).certPem).serial;
    const b = certificateInfo((await createRootCa({ trustDomain: TD })).certPem).serial;
    expect(a).toMatch(/^[0-7][0-9a-f]{31}$/);
    expect(b).toMatch(/^[0-7][0-9a-f]{31}$/);
    expect(a).not.toBe(b);
  });

  it('never lets the intermediate outlive the root', async () => {
    const root = await createRootCa({ trustDomain: TD, validityDays: 30 });
    const inter = await createIntermediateCa({ root, trustDomain: TD });
    expect(certificateInfo(inter.certPem).notAfter).toBe(certificateInfo(root.certPem).notAfter);
  });

  it('refuses a bad trust domain, a root key that does not match, and a non-CA issuer', async () => {
    await expect(createRootCa({ trustDomain: 'Bad Domain' })).rejects.toThrow(/trustDomain: "Bad Domain" may only hold/);
    const a = await createRootCa({ trustDomain: TD });
    const b = await createRootCa({ trustDomain: TD });
    const err = await createIntermediateCa({ root: { certPem: a.certPem, keyPem: b.keyPem }, trustDomain: TD }).catch((e) => e);
    expect(err).toBeInstanceOf(MeshValidationError);
    expect(err.issues).toEqual([{ path: 'root.keyPem', message: 'does not match the certificate' }]);
  });

  it('name constraints keep the intermediate to its trust domain, for openssl and for verifyChain', async () => {
    const ca = await testCa();
    const dir = put(tempDir(), {
      'root.pem': ca.root.certPem,
      'intermediate.pem': ca.intermediate.certPem,
      'intermediate-key.pem': ca.intermediate.keyPem,
      'evil.cnf': 'basicConstraints=critical,CA:FALSE\nsubjectAltName=URI:spiffe://evil.local/ns/shop/svc/payment\n',
      'good.cnf': 'basicConstraints=critical,CA:FALSE\nsubjectAltName=URI:spiffe://novamesh.local/ns/shop/svc/payment\n',
    });
    const { csrPem } = await createCsr({ spiffeId: 'spiffe://novamesh.local/ns/shop/svc/payment' });
    put(dir, { 'leaf.csr': csrPem });
    for (const name of ['evil', 'good']) {
      const signed = openssl(
        [
          'x509',
          '-req',
          '-in',
          'leaf.csr',
          '-CA',
          'intermediate.pem',
          '-CAkey',
          'intermediate-key.pem',
          '-set_serial',
          '7',
          '-days',
          '1',
          '-extfile',
          `${name}.cnf`,
          '-out',
          `${name}.pem`,
        ],
        { cwd: dir },
      );
      expect(signed.code, signed.out).toBe(0);
    }
    expect(openssl(['verify', '-CAfile', 'root.pem', '-untrusted', 'intermediate.pem', 'good.pem'], { cwd: dir }).code).toBe(0);
    const evil = openssl(['verify', '-CAfile', 'root.pem', '-untrusted', 'intermediate.pem', 'evil.pem'], { cwd: dir });
    expect(evil.code).not.toBe(0);
    expect(evil.out).toContain('permitted subtree violation');

    const leafPem = readFileSync(join(dir, 'evil.pem'), 'utf8');
    // verifyChain applies the same constraint.
    const verdict = await verifyChain({ leafPem, chainPems: [ca.intermediate.certPem], trustedRootPems: [ca.root.certPem] });
    expect(verdict).toEqual({
      ok: false,
      reason:
        'URI spiffe://evil.local/ns/shop/svc/payment is outside the names permitted by "O=novamesh.local, CN=Novamesh Intermediate CA"',
    });
    // …and our own signer refuses to issue it, even for a caller that vouches for that identity.
    const evilIdentity = { ...PAYMENT, trustDomain: 'evil.local' };
    const evilCsr = await createCsr({ spiffeId: 'spiffe://evil.local/ns/shop/svc/payment' });
    const err = await signWorkloadCsr({
      csrPem: evilCsr.csrPem,
      issuer: ca.intermediate,
      chainPems: ca.chainPems,
      identity: evilIdentity,
    }).catch((e) => e);
    expect(err).toBeInstanceOf(MeshValidationError);
    expect(err.issues).toEqual([
      {
        path: 'identity',
        message:
          'URI spiffe://evil.local/ns/shop/svc/payment is outside the names permitted by "O=novamesh.local, CN=Novamesh Intermediate CA"',
      },
    ]);
  });
});
