// The DER fast path of signWorkloadCsr: what it issues must read the same to @peculiar/x509,
// node:crypto and openssl(1), for every key type on either side.
import { createHash, X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { Certificate } from '@peculiar/asn1-x509';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { openssl, put, type TestCa, tempDir, testCa } from './ca.spec-helper';
import {
  type CertifiedKey,
  createCsr,
  createIntermediateCa,
  createRootCa,
  generatePrivateKey,
  type IssuedCertificate,
  type KeyAlgorithm,
  signWorkloadCsr,
  verifyChain,
  type WorkloadIdentity,
} from './index';
import { singlePem } from './pem';
import { webcrypto, x509 } from './x509';

const TD = 'novamesh.local';

async function caWith(key: KeyAlgorithm): Promise<TestCa> {
  const root = await createRootCa({ trustDomain: TD, key });
  const intermediate = await createIntermediateCa({ root, trustDomain: TD, key });
  return { root, intermediate, chainPems: [intermediate.certPem, root.certPem] };
}

let ec: TestCa;
let rsa: TestCa;
let p384: TestCa;
beforeAll(async () => {
  [ec, rsa, p384] = await Promise.all([testCa(), caWith({ kind: 'rsa' }), caWith({ kind: 'ec', curve: 'P-384' })]);
});

const idOf = (i: WorkloadIdentity) => `spiffe://${i.trustDomain}/ns/${i.namespace}/svc/${i.service}`;

async function issue(ca: TestCa, identity: WorkloadIdentity, opts: { key?: KeyAlgorithm | { keyPem: string }; dnsNames?: string[] } = {}) {
  const { csrPem } = await createCsr({ spiffeId: idOf(identity), keyPair: opts.key, dnsNames: opts.dnsNames });
  const leaf = await signWorkloadCsr({ csrPem, issuer: ca.intermediate, chainPems: ca.chainPems, identity, allowedDnsNames: () => true });
  return { csrPem, leaf };
}

/** The leaf as node:crypto and @peculiar/x509 read it, checked to agree with each other and with what was returned. */
async function inspect(leaf: IssuedCertificate, issuer: CertifiedKey) {
  const node = new X509Certificate(leaf.certPem);
  const nodeIssuer = new X509Certificate(issuer.certPem);
  expect(node.checkIssued(nodeIssuer)).toBe(true);
  expect(node.verify(nodeIssuer.publicKey)).toBe(true);
  expect(node.ca).toBe(false);
  expect(node.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']); // node calls the extended key usage this
  expect(node.serialNumber.toLowerCase()).toBe(leaf.serial);
  expect(Date.parse(node.validFrom)).toBe(leaf.notBefore);
  expect(Date.parse(node.validTo)).toBe(leaf.notAfter);

  const px = new x509.X509Certificate(leaf.certPem);
  const pxIssuer = new x509.X509Certificate(issuer.certPem);
  expect(await px.verify({ publicKey: pxIssuer.publicKey, signatureOnly: true }, webcrypto)).toBe(true);
  expect(px.serialNumber.toLowerCase()).toBe(leaf.serial);
  expect(px.notBefore.getTime()).toBe(leaf.notBefore);
  expect(px.notAfter.getTime()).toBe(leaf.notAfter);
  expect(px.issuer).toBe(pxIssuer.subject);
  expect(Buffer.from(px.issuerName.toArrayBuffer()).equals(Buffer.from(pxIssuer.subjectName.toArrayBuffer()))).toBe(true);
  expect(node.subject.split('\n').join(', ')).toBe(px.subject);

  const bc = px.getExtension(x509.BasicConstraintsExtension)!;
  const ku = px.getExtension(x509.KeyUsagesExtension)!;
  const eku = px.getExtension(x509.ExtendedKeyUsageExtension)!;
  const san = px.getExtension(x509.SubjectAlternativeNameExtension)!;
  const ski = px.getExtension(x509.SubjectKeyIdentifierExtension)!;
  const aki = px.getExtension(x509.AuthorityKeyIdentifierExtension)!;
  const names = san.names.items.map((n) => `${n.type}:${n.value}`);
  expect(node.subjectAltName).toBe(names.map((n) => n.replace(/^url:/, 'URI:').replace(/^dns:/, 'DNS:')).join(', '));
  // SKI is RFC 5280 method 1, exactly what @peculiar/x509 computes for the key.
  const expectedSki = (await x509.SubjectKeyIdentifierExtension.create(px.publicKey, false, webcrypto)).keyId;
  const issuerSki = pxIssuer.getExtension(x509.SubjectKeyIdentifierExtension)!.keyId;
  return {
    subject: px.subject,
    extensions: px.extensions.map((e) => [e.type, e.critical]),
    ca: bc.ca,
    pathLength: bc.pathLength,
    usages: ku.usages,
    eku: eku.usages,
    names,
    skiMatchesKey: ski.keyId === expectedSki,
    akiMatchesIssuer: aki.keyId === issuerSki,
    signature: px.signatureAlgorithm,
  };
}

const LEAF_EXTENSIONS = [
  ['2.5.29.19', true],
  ['2.5.29.15', true],
  ['2.5.29.37', false],
  ['2.5.29.17', false],
  ['2.5.29.14', false],
  ['2.5.29.35', false],
];
const EKU = ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'];

describe('the DER fast path issues certificates every parser reads alike', () => {
  it('EC P-256 CSR under the default EC issuer', async () => {
    const identity = { trustDomain: TD, namespace: 'shop', service: 'payment' };
    const { leaf } = await issue(ec, identity, { dnsNames: ['payment.shop', 'Payment.Shop.svc', 'payment.shop'] });
    expect(await inspect(leaf, ec.intermediate)).toEqual({
      subject: 'O=novamesh.local, OU=shop, CN=payment',
      extensions: LEAF_EXTENSIONS,
      ca: false,
      pathLength: undefined,
      usages: x509.KeyUsageFlags.digitalSignature,
      eku: EKU,
      names: [`url:${idOf(identity)}`, 'dns:payment.shop', 'dns:payment.shop.svc'],
      skiMatchesKey: true,
      akiMatchesIssuer: true,
      signature: { name: 'ECDSA', hash: { name: 'SHA-256' } },
    });
    expect(await verifyChain({ leafPem: leaf.chainPem, chainPems: [], trustedRootPems: [ec.root.certPem] })).toEqual({
      ok: true,
      spiffeId: idOf(identity),
    });
  });

  it.each([
    ['RSA-2048 CSR, EC issuer', () => ec, { kind: 'rsa', bits: 2048 }, x509.KeyUsageFlags.keyEncipherment, 'ECDSA', 'SHA-256'],
    ['EC P-384 CSR, EC issuer', () => ec, { kind: 'ec', curve: 'P-384' }, 0, 'ECDSA', 'SHA-256'],
    ['EC P-256 CSR, RSA issuer', () => rsa, { kind: 'ec' }, 0, 'RSASSA-PKCS1-v1_5', 'SHA-256'],
    [
      'RSA-2048 CSR, RSA issuer',
      () => rsa,
      { kind: 'rsa', bits: 2048 },
      x509.KeyUsageFlags.keyEncipherment,
      'RSASSA-PKCS1-v1_5',
      'SHA-256',
    ],
    ['EC P-256 CSR, EC P-384 issuer', () => p384, { kind: 'ec' }, 0, 'ECDSA', 'SHA-384'],
  ] as const)('%s: parsers agree, openssl verifies and prints it', async (_what, ca, key, extraUsage, sigName, hash) => {
    const identity = { trustDomain: TD, namespace: 'bench', service: 'api-1' };
    const { leaf } = await issue(ca(), identity, { key, dnsNames: ['api-1.bench'] });
    const seen = await inspect(leaf, ca().intermediate);
    expect(seen).toMatchObject({
      extensions: LEAF_EXTENSIONS,
      usages: x509.KeyUsageFlags.digitalSignature | extraUsage,
      names: [`url:${idOf(identity)}`, 'dns:api-1.bench'],
      skiMatchesKey: true,
      akiMatchesIssuer: true,
      signature: { name: sigName, hash: { name: hash } },
    });

    const dir = put(tempDir(), { 'root.pem': ca().root.certPem, 'intermediate.pem': ca().intermediate.certPem, 'leaf.pem': leaf.certPem });
    expect(openssl(['verify', '-CAfile', 'root.pem', '-untrusted', 'intermediate.pem', 'leaf.pem'], { cwd: dir }).out.trim()).toBe(
      'leaf.pem: OK',
    );
    const text = openssl(['x509', '-text', '-noout', '-in', 'leaf.pem'], { cwd: dir }).out;
    expect(text).toContain(`URI:${idOf(identity)}, DNS:api-1.bench`);
    expect(text).toMatch(
      extraUsage ? /Key Usage: critical\s+Digital Signature, Key Encipherment\n/ : /Key Usage: critical\s+Digital Signature\n/,
    );
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    const fmt = (ms: number) =>
      new Date(ms)
        .toUTCString()
        .replace(/^\w+, (\d+) (\w+) (\d+) (\S+) GMT$/, (_m, d, mo, y, t) => `${mo} ${String(Number(d)).padStart(2, ' ')} ${t} ${y} GMT`);
    expect(text).toContain(`Not Before: ${fmt(leaf.notBefore)}`);
    expect(text).toContain(`Not After : ${fmt(leaf.notAfter)}`);
    expect(text).toContain('Subject: O = novamesh.local, OU = bench, CN = api-1');
  });

  it('signs with sha256WithRSAEncryption and NULL parameters under an RSA issuer', async () => {
    const { leaf } = await issue(rsa, { trustDomain: TD, namespace: 'a', service: 'b' });
    const der = singlePem(leaf.certPem, ['CERTIFICATE'], 'leaf');
    const cert = AsnConvert.parse(der, Certificate);
    for (const alg of [cert.signatureAlgorithm, cert.tbsCertificate.signature]) {
      expect(alg.algorithm).toBe('1.2.840.113549.1.1.11');
      expect(alg.parameters).toBeNull(); // asn1-x509 reads NULL as null, absent as undefined
    }
    // AlgorithmIdentifier { sha256WithRSAEncryption, NULL } in tbsCertificate and after it
    expect(der.toString('hex').split('300d06092a864886f70d01010b0500').length - 1).toBe(2);
    const ecLeaf = (await issue(ec, { trustDomain: TD, namespace: 'a', service: 'b' })).leaf;
    const ecCert = AsnConvert.parse(singlePem(ecLeaf.certPem, ['CERTIFICATE'], 'leaf'), Certificate);
    expect(ecCert.signatureAlgorithm).toMatchObject({ algorithm: '1.2.840.10045.4.3.2', parameters: undefined });
  });
});

describe('the DER fast path, over random identities, DNS names and lifetimes', () => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
  let keyPem: string;
  beforeAll(async () => {
    keyPem = await generatePrivateKey();
  });

  it('puts exactly the expected fields in the certificate', async () => {
    const issuerNotAfter = new X509Certificate(ec.intermediate.certPem).validTo;
    await fc.assert(
      fc.asyncProperty(
        label,
        label,
        fc.uniqueArray(
          fc.array(label, { minLength: 1, maxLength: 4 }).map((l) => l.join('.')),
          { maxLength: 5 },
        ),
        fc.integer({ min: 1_000, max: 2 * 365 * 86_400_000 }),
        fc.integer({ min: 0, max: 3_600_000 }),
        fc.integer({ min: 0, max: 86_400_000 }),
        async (namespace, service, dnsNames, lifetimeMs, backdateMs, later) => {
          const identity = { trustDomain: TD, namespace, service };
          const now = Date.now() + later;
          const { csrPem } = await createCsr({ spiffeId: idOf(identity), keyPair: { keyPem }, dnsNames });
          const leaf = await signWorkloadCsr({
            csrPem,
            issuer: ec.intermediate,
            chainPems: ec.chainPems,
            identity,
            allowedDnsNames: () => true,
            lifetimeMs,
            backdateMs,
            now,
          });
          const seconds = (ms: number) => Math.floor(ms / 1000) * 1000;
          expect(leaf.notBefore).toBe(seconds(now - backdateMs));
          expect(leaf.notAfter).toBe(seconds(Math.min(now + lifetimeMs, Date.parse(issuerNotAfter))));
          expect(leaf.spiffeId).toBe(idOf(identity));
          const seen = await inspect(leaf, ec.intermediate);
          expect(seen).toEqual({
            subject: `O=${TD}, OU=${namespace}, CN=${service}`,
            extensions: LEAF_EXTENSIONS,
            ca: false,
            pathLength: undefined,
            usages: x509.KeyUsageFlags.digitalSignature,
            eku: EKU,
            names: [`url:${idOf(identity)}`, ...new Set(dnsNames.map((n) => `dns:${n}`))],
            skiMatchesKey: true,
            akiMatchesIssuer: true,
            signature: { name: 'ECDSA', hash: { name: 'SHA-256' } },
          });
          const spki = new X509Certificate(leaf.certPem).publicKey.export({ type: 'spki', format: 'der' });
          const csrSpki = Buffer.from(new x509.Pkcs10CertificateRequest(csrPem).publicKey.rawData);
          expect(spki.equals(csrSpki)).toBe(true);
          expect(
            createHash('sha1')
              .update(spki.subarray(spki.length - 65))
              .digest('hex'),
          ).toBe(new x509.X509Certificate(leaf.certPem).getExtension(x509.SubjectKeyIdentifierExtension)!.keyId);
        },
      ),
      { numRuns: 40 },
    );
  });
});
