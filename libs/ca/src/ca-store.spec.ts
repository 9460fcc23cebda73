import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MeshValidationError } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { openssl, PAYMENT, PAYMENT_ID, put, TD, tempDir, testCa } from './ca.spec-helper';
import { certificateInfo, createCsr, loadOrCreateCa, signWorkloadCsr, verifyChain } from './index';

const mode = (path: string) => statSync(path).mode & 0o777;
const fingerprints = (ca: { root: { certPem: string }; intermediate: { certPem: string } }) => ({
  root: certificateInfo(ca.root.certPem).fingerprint256,
  intermediate: certificateInfo(ca.intermediate.certPem).fingerprint256,
});

describe('loadOrCreateCa', () => {
  it('creates root + intermediate on first start, then loads the same ones', async () => {
    const dir = join(tempDir(), 'ca'); // does not exist yet
    const first = await loadOrCreateCa({ dir, trustDomain: TD });
    expect(first.created).toBe(true);
    expect(mode(join(dir, 'root.pem'))).toBe(0o644);
    expect(mode(join(dir, 'intermediate.pem'))).toBe(0o644);
    expect(mode(join(dir, 'root-key.pem'))).toBe(0o600);
    expect(mode(join(dir, 'intermediate-key.pem'))).toBe(0o600);
    expect(mode(dir)).toBe(0o700);
    expect(openssl(['verify', '-CAfile', 'root.pem', 'intermediate.pem'], { cwd: dir }).code).toBe(0);

    const second = await loadOrCreateCa({ dir, trustDomain: TD });
    expect(second.created).toBe(false);
    expect(fingerprints(second)).toEqual(fingerprints(first));
    expect(second.intermediate.keyPem).toBe(first.intermediate.keyPem);
    expect(second.chainPems).toEqual([first.intermediate.certPem, first.root.certPem]);
    expect(second.trustBundlePem).toBe(first.root.certPem);
  });

  it('encrypts the keys it writes with the passphrase and needs it to load them', async () => {
    const dir = tempDir();
    const first = await loadOrCreateCa({ dir, trustDomain: TD, passphrase: 's3cret' });
    for (const key of ['root-key.pem', 'intermediate-key.pem']) {
      expect(readFileSync(join(dir, key), 'utf8')).toMatch(/^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
    }
    expect(fingerprints(await loadOrCreateCa({ dir, trustDomain: TD, passphrase: 's3cret' }))).toEqual(fingerprints(first));
    await expect(loadOrCreateCa({ dir, trustDomain: TD })).rejects.toThrow('the key is encrypted and no passphrase was given');
    await expect(loadOrCreateCa({ dir, trustDomain: TD, passphrase: 'nope' })).rejects.toThrow('wrong passphrase');
  });

  it('plug-in root: creates an intermediate under an operator root made by openssl', async () => {
    const dir = tempDir();
    const made = openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        'root-key.pem',
        '-out',
        'root.pem',
        '-subj',
        '/O=Example Corp/CN=Operator Root',
        '-days',
        '3650',
        '-addext',
        'basicConstraints=critical,CA:TRUE',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      { cwd: dir },
    );
    expect(made.code, made.out).toBe(0);
    const operatorRoot = readFileSync(join(dir, 'root.pem'), 'utf8');

    const ca = await loadOrCreateCa({ dir, trustDomain: TD });
    expect(ca.created).toBe(true);
    expect(ca.root.certPem).toBe(operatorRoot);
    expect(mode(join(dir, 'intermediate-key.pem'))).toBe(0o600);
    expect(openssl(['verify', '-CAfile', 'root.pem', 'intermediate.pem'], { cwd: dir }).out.trim()).toBe('intermediate.pem: OK');

    // and a workload issued from it verifies up to the operator's root
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID });
    const leaf = await signWorkloadCsr({ csrPem, issuer: ca.intermediate, chainPems: ca.chainPems, identity: PAYMENT });
    put(dir, { 'leaf.pem': leaf.certPem });
    expect(openssl(['verify', '-CAfile', 'root.pem', '-untrusted', 'intermediate.pem', 'leaf.pem'], { cwd: dir }).code).toBe(0);

    const again = await loadOrCreateCa({ dir, trustDomain: TD });
    expect(again.created).toBe(false);
    expect(fingerprints(again)).toEqual(fingerprints(ca));
  });

  it('plug-in intermediate: uses it as is, without the root key', async () => {
    const made = await testCa();
    const dir = put(tempDir(), {
      'root.pem': made.root.certPem,
      'intermediate.pem': made.intermediate.certPem,
      'intermediate-key.pem': made.intermediate.keyPem,
    });
    const ca = await loadOrCreateCa({ dir, trustDomain: TD });
    expect(ca.created).toBe(false);
    expect(ca.root).toEqual({ certPem: made.root.certPem });
    expect(fingerprints(ca)).toEqual(fingerprints(made));
  });

  it('renews an expired intermediate under the same root', async () => {
    const dir = tempDir();
    const first = await loadOrCreateCa({ dir, trustDomain: TD });
    const later = Date.now() + 400 * 86_400_000;
    const renewed = await loadOrCreateCa({ dir, trustDomain: TD, now: later });
    expect(renewed.created).toBe(true);
    expect(fingerprints(renewed).root).toBe(fingerprints(first).root);
    expect(fingerprints(renewed).intermediate).not.toBe(fingerprints(first).intermediate);
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID });
    const leaf = await signWorkloadCsr({
      csrPem,
      issuer: renewed.intermediate,
      chainPems: renewed.chainPems,
      identity: PAYMENT,
      now: later,
    });
    expect(
      await verifyChain({ leafPem: leaf.chainPem, chainPems: [], trustedRootPems: [renewed.trustBundlePem], now: later }),
    ).toMatchObject({ ok: true });
  });

  it('refuses an incomplete or inconsistent directory, naming the files', async () => {
    const made = await testCa();
    const other = await testCa();

    const rootOnly = put(tempDir(), { 'root.pem': made.root.certPem });
    const e1 = await loadOrCreateCa({ dir: rootOnly, trustDomain: TD }).catch((e) => e);
    expect(e1).toBeInstanceOf(MeshValidationError);
    expect(e1.issues).toEqual([
      { path: join(rootOnly, 'root-key.pem'), message: 'is missing (a plug-in root needs its key to create the intermediate)' },
    ]);

    const keyOnly = put(tempDir(), { 'root.pem': made.root.certPem, 'intermediate-key.pem': made.intermediate.keyPem });
    const e2 = await loadOrCreateCa({ dir: keyOnly, trustDomain: TD }).catch((e) => e);
    expect(e2.issues).toEqual([
      {
        path: join(keyOnly, 'intermediate.pem'),
        message: 'is missing (a plug-in intermediate needs its certificate, its key and the root)',
      },
    ]);

    const mismatched = put(tempDir(), {
      'root.pem': other.root.certPem,
      'intermediate.pem': made.intermediate.certPem,
      'intermediate-key.pem': other.intermediate.keyPem,
    });
    const e3 = await loadOrCreateCa({ dir: mismatched, trustDomain: TD }).catch((e) => e);
    expect(e3.issues).toEqual([{ path: join(mismatched, 'intermediate-key.pem'), message: 'does not match the certificate' }]);

    const foreign = put(tempDir(), {
      'root.pem': other.root.certPem,
      'intermediate.pem': made.intermediate.certPem,
      'intermediate-key.pem': made.intermediate.keyPem,
    });
    const e4 = await loadOrCreateCa({ dir: foreign, trustDomain: TD }).catch((e) => e);
    expect(e4.issues).toEqual([
      {
        path: join(foreign, 'intermediate.pem'),
        message: `was not issued by ${join(foreign, 'root.pem')} ("O=novamesh.local, CN=Novamesh Root CA")`,
      },
    ]);

    const wrongDomain = put(tempDir(), {
      'root.pem': made.root.certPem,
      'intermediate.pem': made.intermediate.certPem,
      'intermediate-key.pem': made.intermediate.keyPem,
    });
    const e5 = await loadOrCreateCa({ dir: wrongDomain, trustDomain: 'other.local' }).catch((e) => e);
    expect(e5.issues).toEqual([
      {
        path: join(wrongDomain, 'intermediate.pem'),
        message:
          'does not admit trust domain other.local: URI spiffe://other.local/ns/x/svc/x is outside the names permitted by "O=novamesh.local, CN=Novamesh Intermediate CA"',
      },
    ]);
  });
});
