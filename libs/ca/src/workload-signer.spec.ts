import { createPrivateKey, createPublicKey, ECDH, type KeyObject, sign as nodeSign, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, MeshError, MeshValidationError } from '@novamesh/contracts';
import { beforeAll, describe, expect, it } from 'vitest';
import { openssl, opensslDates, PAYMENT, PAYMENT_ID, put, type TestCa, tempDir, testCa } from './ca.spec-helper';
import { bitString, explicit, ia5String, octetString, oid, sequence, set, smallInteger, utf8String } from './der';
import { certificateInfo, createCsr, generatePrivateKey, type SignWorkloadCsrOptions, signWorkloadCsr } from './index';

const DNS = ['payment.shop.svc', 'payment.shop.svc.novamesh.local'];
let ca: TestCa;
beforeAll(async () => {
  ca = await testCa();
});

const sign = (csrPem: string, extra: Partial<SignWorkloadCsrOptions> = {}) =>
  signWorkloadCsr({ csrPem, issuer: ca.intermediate, chainPems: ca.chainPems, identity: PAYMENT, ...extra });

/** The issues of the refusal `p` ends in (and checks it is a MESH_INVALID MeshValidationError). */
async function refusal(p: Promise<unknown>) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MeshValidationError);
  expect((err as MeshError).code).toBe(ErrorCode.invalid);
  return (err as MeshError).issues;
}

describe('signWorkloadCsr issues', () => {
  it('an X.509-SVID that openssl verifies and reads as a mesh leaf', async () => {
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID, dnsNames: DNS });
    const leaf = await sign(csrPem);
    expect(leaf.spiffeId).toBe(PAYMENT_ID);
    const dir = put(tempDir(), {
      'root.pem': ca.root.certPem,
      'intermediate.pem': ca.intermediate.certPem,
      'leaf.pem': leaf.certPem,
      'chain.pem': leaf.chainPem,
    });

    const verify = openssl(['verify', '-CAfile', 'root.pem', '-untrusted', 'intermediate.pem', 'leaf.pem'], { cwd: dir });
    expect(verify.out.trim()).toBe('leaf.pem: OK');
    // chainPem carries the intermediate, so a peer needs only the root.
    expect(openssl(['verify', '-CAfile', 'root.pem', '-untrusted', 'chain.pem', 'leaf.pem'], { cwd: dir }).code).toBe(0);
    expect(openssl(['verify', '-CAfile', 'root.pem', 'leaf.pem'], { cwd: dir }).code).not.toBe(0);

    const text = openssl(['x509', '-text', '-noout', '-in', 'leaf.pem'], { cwd: dir }).out;
    expect(text).toContain(`URI:${PAYMENT_ID}, DNS:payment.shop.svc, DNS:payment.shop.svc.novamesh.local`);
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication, TLS Web Client Authentication/);
    expect(text).toContain('X509v3 Authority Key Identifier');
    expect(text).toContain('Issuer: O = novamesh.local, CN = Novamesh Intermediate CA');

    const info = certificateInfo(leaf.certPem);
    expect(info).toMatchObject({ serial: leaf.serial, spiffeId: PAYMENT_ID, dnsNames: DNS, isCa: false });
    expect(leaf.chainPem.startsWith(leaf.certPem)).toBe(true);
    expect(leaf.chainPem).toContain(ca.intermediate.certPem.trim());
    expect(leaf.chainPem).not.toContain(ca.root.certPem.trim());
  });

  it('backdates notBefore 5 min and ends 24 h after now, as openssl reads it', async () => {
    const now = Date.now();
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID });
    const leaf = await sign(csrPem, { now });
    expect(Math.abs(leaf.notBefore - (now - 5 * 60_000))).toBeLessThan(1000);
    expect(Math.abs(leaf.notAfter - (now + 24 * 3_600_000))).toBeLessThan(1000);
    const dates = opensslDates(put(tempDir(), { 'leaf.pem': leaf.certPem }), 'leaf.pem');
    expect(dates).toEqual({ notBefore: leaf.notBefore, notAfter: leaf.notAfter });

    const short = await sign(csrPem, { now, lifetimeMs: 3_600_000, backdateMs: 0 });
    expect(Math.abs(short.notBefore - now)).toBeLessThan(1000);
    expect(Math.abs(short.notAfter - (now + 3_600_000))).toBeLessThan(1000);
  });

  it('gives each issuance a fresh random serial', async () => {
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID });
    const serials = new Set<string>();
    for (let i = 0; i < 5; i++) serials.add((await sign(csrPem)).serial);
    expect(serials.size).toBe(5);
    for (const s of serials) expect(s).toMatch(/^[0-7][0-9a-f]{31}$/);
  });

  it('signs an RSA 2048 CSR made by openssl, adding keyEncipherment', async () => {
    const dir = put(tempDir(), { 'key.pem': await generatePrivateKey({ kind: 'rsa', bits: 2048 }) });
    const req = openssl(
      [
        'req',
        '-new',
        '-key',
        'key.pem',
        '-subj',
        '/CN=ignored',
        '-addext',
        `subjectAltName=URI:${PAYMENT_ID},DNS:payment.shop`,
        '-out',
        'req.pem',
      ],
      {
        cwd: dir,
      },
    );
    expect(req.code, req.out).toBe(0);
    const leaf = await sign(readFileSync(join(dir, 'req.pem'), 'utf8'));
    put(dir, { 'leaf.pem': leaf.certPem });
    const text = openssl(['x509', '-text', '-noout', '-in', 'leaf.pem'], { cwd: dir }).out;
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(text).toContain('Subject: O = novamesh.local, OU = shop, CN = payment'); // the CSR's subject is not copied
  });

  it('allows DNS names by list or predicate; by default the service names', async () => {
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID, dnsNames: ['payment', 'payment.shop', 'PAYMENT.shop.svc'] });
    expect(certificateInfo((await sign(csrPem)).certPem).dnsNames).toEqual(['payment', 'payment.shop', 'payment.shop.svc']);
    const custom = await createCsr({ spiffeId: PAYMENT_ID, dnsNames: ['pay.example.com'] });
    await expect(sign(custom.csrPem, { allowedDnsNames: ['pay.example.com'] })).resolves.toBeDefined();
    await expect(sign(custom.csrPem, { allowedDnsNames: (n) => n.endsWith('.example.com') })).resolves.toBeDefined();
    expect(await refusal(sign(custom.csrPem))).toEqual([{ path: 'csr.san', message: 'DNS name pay.example.com is not allowed' }]);
  });
});

describe('signWorkloadCsr refuses, saying where and why', () => {
  it('a CSR whose signature was tampered with', async () => {
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID });
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 1]! ^= 0x01; // the last byte belongs to the signature
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(await refusal(sign(tampered))).toEqual([{ path: 'csr.signature', message: 'does not verify' }]);
  });

  it('an RSA 1024 key', async () => {
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID, keyPair: { kind: 'rsa', bits: 1024 } });
    expect(await refusal(sign(csrPem))).toEqual([{ path: 'csr.key', message: 'RSA 1024 bits is weaker than 2048' }]);
  });

  it('a SPIFFE ID naming another service', async () => {
    const { csrPem } = await createCsr({ spiffeId: 'spiffe://novamesh.local/ns/shop/svc/orders' });
    expect(await refusal(sign(csrPem))).toEqual([
      {
        path: 'csr.san',
        message: 'URI spiffe://novamesh.local/ns/shop/svc/orders does not match the identity spiffe://novamesh.local/ns/shop/svc/payment',
      },
    ]);
  });

  it('a DNS name that is not allowed', async () => {
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID, dnsNames: ['payment.shop.svc', 'evil.com'] });
    expect(await refusal(sign(csrPem))).toEqual([{ path: 'csr.san', message: 'DNS name evil.com is not allowed' }]);
  });

  it('two URI SANs, and no URI SAN', async () => {
    const dir = put(tempDir(), { 'key.pem': await generatePrivateKey() });
    const two = openssl(
      [
        'req',
        '-new',
        '-key',
        'key.pem',
        '-subj',
        '/CN=payment',
        '-addext',
        `subjectAltName=URI:${PAYMENT_ID},URI:spiffe://novamesh.local/ns/shop/svc/orders`,
      ],
      { cwd: dir },
    );
    expect(await refusal(sign(two.out))).toEqual([
      { path: 'csr.san', message: 'expected exactly one URI SAN (the SPIFFE ID spiffe://novamesh.local/ns/shop/svc/payment), found 2' },
    ]);
    const none = openssl(['req', '-new', '-key', 'key.pem', '-subj', '/CN=payment'], { cwd: dir });
    expect(await refusal(sign(none.out))).toEqual([
      { path: 'csr.san', message: 'expected exactly one URI SAN (the SPIFFE ID spiffe://novamesh.local/ns/shop/svc/payment), found 0' },
    ]);
  });

  it('SAN forms other than URI and DNS, and invalid host names', async () => {
    const dir = put(tempDir(), { 'key.pem': await generatePrivateKey() });
    const req = openssl(
      ['req', '-new', '-key', 'key.pem', '-subj', '/CN=payment', '-addext', `subjectAltName=URI:${PAYMENT_ID},IP:10.0.0.1,DNS:*.shop.svc`],
      {
        cwd: dir,
      },
    );
    expect(await refusal(sign(req.out, { allowedDnsNames: () => true }))).toEqual([
      { path: 'csr.san', message: 'ip name 10.0.0.1 is not allowed (only URI and DNS)' },
      { path: 'csr.san', message: 'DNS name *.shop.svc is not a valid host name' },
    ]);
  });

  it('malformed PEM, or PEM that is not a CSR', async () => {
    expect(await refusal(sign('hello'))).toEqual([{ path: 'csr', message: 'not a PEM CERTIFICATE REQUEST' }]);
    expect(await refusal(sign('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'))).toEqual([
      { path: 'csr', message: 'not a parseable PKCS#10 request' },
    ]);
    expect(await refusal(sign(ca.root.certPem))).toEqual([{ path: 'csr', message: 'not a PEM CERTIFICATE REQUEST (found CERTIFICATE)' }]);
  });

  it('truncated DER, and DER that is not a CSR', async () => {
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID });
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const certDer = Buffer.from(ca.root.certPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    for (const bad of [der.subarray(0, der.length - 1), der.subarray(0, 40), Buffer.concat([der, Buffer.of(0)]), certDer]) {
      expect(await refusal(sign(asCsrPem(bad)))).toEqual([{ path: 'csr', message: 'not a parseable PKCS#10 request' }]);
    }
  });

  it('a signature algorithm other than ECDSA or RSA PKCS#1 v1.5 with SHA-2', async () => {
    const dir = put(tempDir(), { 'rsa.pem': await generatePrivateKey({ kind: 'rsa' }), 'ec.pem': await generatePrivateKey() });
    const req = (key: string, ...extra: string[]) =>
      openssl(['req', '-new', '-key', key, '-subj', '/CN=payment', '-addext', `subjectAltName=URI:${PAYMENT_ID}`, ...extra], { cwd: dir })
        .out;
    const unsupported = (name: string) =>
      `signature algorithm ${name} is not supported (ECDSA or RSA PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512)`;
    expect(await refusal(sign(req('rsa.pem', '-sigopt', 'rsa_padding_mode:pss')))).toEqual([
      { path: 'csr.signature', message: unsupported('RSASSA-PSS (1.2.840.113549.1.1.10)') },
    ]);
    expect(await refusal(sign(req('ec.pem', '-sha1')))).toEqual([
      { path: 'csr.signature', message: unsupported('ecdsa-with-SHA1 (1.2.840.10045.4.1)') },
    ]);
    await expect(sign(req('ec.pem', '-sha384'))).resolves.toBeDefined();
    await expect(sign(req('rsa.pem', '-sha512'))).resolves.toBeDefined();
  });

  it('names every SAN form it will not put in a certificate', async () => {
    const dir = put(tempDir(), { 'key.pem': await generatePrivateKey() });
    const san = `URI:${PAYMENT_ID},IP:2001:db8::1,IP:::1,email:ops@example.com,RID:1.2.3.4,otherName:1.3.6.1.4.1.311.20.2.3;UTF8:a@b`;
    const req = openssl(['req', '-new', '-key', 'key.pem', '-subj', '/CN=payment', '-addext', `subjectAltName=${san}`], { cwd: dir });
    expect(await refusal(sign(req.out))).toEqual([
      { path: 'csr.san', message: 'ip name 2001:db8::1 is not allowed (only URI and DNS)' },
      { path: 'csr.san', message: 'ip name ::1 is not allowed (only URI and DNS)' },
      { path: 'csr.san', message: 'email name ops@example.com is not allowed (only URI and DNS)' },
      { path: 'csr.san', message: 'registeredID name 1.2.3.4 is not allowed (only URI and DNS)' },
      { path: 'csr.san', message: 'otherName name 1.3.6.1.4.1.311.20.2.3 is not allowed (only URI and DNS)' },
    ]);
  });

  it('hand-made requests: a SAN that does not parse, a signature labelled for another key type, no attributes', async () => {
    const ecKey = createPrivateKey(await generatePrivateKey());
    const rsaKey = createPrivateKey(await generatePrivateKey({ kind: 'rsa' }));
    const sanOf = (names: Buffer) => [sequence(oid('2.5.29.17'), octetString(names))];
    const goodSan = sanOf(sequence(ia5String(PAYMENT_ID, 6)));
    expect(await sign(handMadeCsr(ecKey, { extensions: goodSan }))).toMatchObject({ spiffeId: PAYMENT_ID });

    expect(await refusal(sign(handMadeCsr(ecKey, { extensions: sanOf(Buffer.from('3004860141', 'hex')) })))).toEqual([
      { path: 'csr.san', message: 'the requested subjectAltName does not parse' },
    ]);
    expect(await refusal(sign(handMadeCsr(rsaKey, { extensions: goodSan, signatureOid: '1.2.840.10045.4.3.2' })))).toEqual([
      { path: 'csr.signature', message: 'does not verify' },
    ]);
    // A compressed EC point is read by OpenSSL's SPKI decoder (the JWK shortcut takes uncompressed points only).
    const point = createPublicKey(ecKey).export({ format: 'jwk' });
    const compressed = ECDH.convertKey(
      Buffer.concat([Buffer.of(4), Buffer.from(point.x!, 'base64url'), Buffer.from(point.y!, 'base64url')]),
      'prime256v1',
      undefined,
      undefined,
      'compressed',
    ) as Buffer;
    const spki = sequence(sequence(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7')), bitString(compressed));
    const leaf = await sign(handMadeCsr(ecKey, { extensions: goodSan, spki }));
    expect(new X509Certificate(leaf.certPem).publicKey.export({ format: 'jwk' })).toEqual(point);

    expect(await refusal(sign(handMadeCsr(ecKey, { attributes: false })))).toEqual([
      { path: 'csr.san', message: 'expected exactly one URI SAN (the SPIFFE ID spiffe://novamesh.local/ns/shop/svc/payment), found 0' },
    ]);
  });

  it('every problem of one CSR at once, in the message too', async () => {
    const { csrPem } = await createCsr({
      spiffeId: 'spiffe://novamesh.local/ns/shop/svc/orders',
      dnsNames: ['evil.com'],
      keyPair: { kind: 'rsa', bits: 1024 },
    });
    const err = await sign(csrPem).then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(err instanceof MeshValidationError)) throw new Error(`expected a MeshValidationError, got ${String(err)}`);
    expect(err.issues.map((i) => i.path)).toEqual(['csr.key', 'csr.san', 'csr.san']);
    expect(err.message).toBe(
      'certificate signing request refused: csr.key: RSA 1024 bits is weaker than 2048; ' +
        'csr.san: URI spiffe://novamesh.local/ns/shop/svc/orders does not match the identity spiffe://novamesh.local/ns/shop/svc/payment; ' +
        'csr.san: DNS name evil.com is not allowed',
    );
  });

  it('a bad issuer or chain, before looking at the CSR', async () => {
    const { csrPem } = await createCsr({ spiffeId: PAYMENT_ID });
    const other = await testCa();
    expect(await refusal(sign(csrPem, { issuer: { certPem: ca.intermediate.certPem, keyPem: other.intermediate.keyPem } }))).toEqual([
      { path: 'issuer.keyPem', message: 'does not match the certificate' },
    ]);
    expect(await refusal(sign(csrPem, { chainPems: other.chainPems }))).toEqual([
      { path: 'chainPems[0]', message: 'must be the issuer certificate' },
    ]);
    expect(await refusal(sign(csrPem, { now: Date.now() + 400 * 86_400_000 }))).toEqual([
      { path: 'issuer.certPem', message: expect.stringMatching(/^"O=novamesh.local, CN=Novamesh Intermediate CA" is not valid now/) },
    ]);
    expect(await refusal(sign(csrPem, { identity: { ...PAYMENT, service: 'a/b' }, lifetimeMs: 0 }))).toEqual([
      { path: 'lifetimeMs', message: 'must be positive, got 0' },
      { path: 'identity.service', message: '"a/b" may only hold letters, digits, ".", "-" and "_"' },
    ]);
  });
});

const asCsrPem = (der: Buffer) =>
  `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;

/** A PKCS#10 request built with the DER writer, for shapes no CSR tool produces. */
function handMadeCsr(key: KeyObject, opts: { extensions?: Buffer[]; attributes?: boolean; signatureOid?: string; spki?: Buffer }): string {
  const rsa = key.asymmetricKeyType === 'rsa';
  const spki = opts.spki ?? createPublicKey(key).export({ type: 'spki', format: 'der' });
  const attributes = sequence(oid('1.2.840.113549.1.9.14'), set(sequence(...(opts.extensions ?? []))));
  const info = sequence(
    smallInteger(0),
    sequence(set(sequence(oid('2.5.4.3'), utf8String('payment')))),
    spki,
    ...(opts.attributes === false ? [] : [explicit(0, attributes)]),
  );
  const signatureOid = opts.signatureOid ?? (rsa ? '1.2.840.113549.1.1.11' : '1.2.840.10045.4.3.2');
  return asCsrPem(sequence(info, sequence(oid(signatureOid)), bitString(nodeSign('sha256', info, key))));
}
