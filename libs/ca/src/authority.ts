import { createHash } from 'node:crypto';
import { type Issue, MeshValidationError } from '@novamesh/contracts';
import {
  type CertifiedKey,
  canSignCertificates,
  DAY_MS,
  parseCertificate,
  publicKeyOf,
  randomSerial,
  spiffeNameConstraints,
  subjectKeyId,
} from './certificate';
import { generatePrivateKey, importSigner, type KeyAlgorithm, spkiOf } from './keys';
import { type LeafIssuer, leafIssuer } from './leaf-der';
import { pemText } from './pem';
import { assertTrustDomain } from './spiffe-id';
import { webcrypto, x509 } from './x509';

/** CA certificates start this far in the past so a peer whose clock lags a little still accepts them. */
export const CA_BACKDATE_MS = 5 * 60_000;

export interface CreateRootCaOptions {
  trustDomain: string;
  commonName?: string;
  /** Default 3650 (10 years). */
  validityDays?: number;
  /** Epoch ms; default Date.now(). */
  now?: number;
  /** Default ECDSA P-256. */
  key?: KeyAlgorithm;
}

function checkDays(days: number, path: string): void {
  if (!Number.isFinite(days) || days <= 0)
    throw new MeshValidationError('invalid validity', [{ path, message: `must be a positive number of days, got ${days}` }]);
}

/**
 * Creates a self-signed root CA for `trustDomain`: fresh ECDSA P-256 key, CA:TRUE (critical, no path
 * length limit), key usage keyCertSign|cRLSign (critical), subject key identifier, random positive
 * 16-byte serial, valid from now − 5 min for `validityDays`. The key is returned in memory only.
 */
export async function createRootCa(opts: CreateRootCaOptions): Promise<CertifiedKey> {
  assertTrustDomain(opts.trustDomain);
  const days = opts.validityDays ?? 3650;
  checkDays(days, 'validityDays');
  const now = opts.now ?? Date.now();
  const keyPem = await generatePrivateKey(opts.key ?? { kind: 'ec' });
  const signer = await importSigner(keyPem, 'key');
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: [{ O: [opts.trustDomain] }, { CN: [opts.commonName ?? 'Novamesh Root CA'] }],
      notBefore: new Date(now - CA_BACKDATE_MS),
      notAfter: new Date(now + days * DAY_MS),
      keys: { privateKey: signer.privateKey, publicKey: signer.publicKey },
      signingAlgorithm: signer.signingAlgorithm,
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(signer.publicKey, false, webcrypto),
      ],
    },
    webcrypto,
  );
  return { certPem: pemText(cert), keyPem };
}

export interface CreateIntermediateCaOptions {
  /** The CA that signs the intermediate (normally the root); its key must match its certificate. */
  root: CertifiedKey;
  trustDomain: string;
  commonName?: string;
  /** Default 365; never beyond the root's notAfter. */
  validityDays?: number;
  /** Epoch ms; default Date.now(). */
  now?: number;
  /** Default true: a critical name constraint permits only URI SANs in `spiffe://<trustDomain>`. */
  nameConstraints?: boolean;
  key?: KeyAlgorithm;
}

/**
 * Loads a CA certificate and key that will sign, checking the key matches the certificate, the
 * certificate may sign certificates and (unless `now` is undefined) is valid at `now`. Throws
 * MeshValidationError at `<path>.certPem` / `<path>.keyPem`.
 */
type PreparedIssuer = {
  cert: x509.X509Certificate;
  signer: Awaited<ReturnType<typeof importSigner>>;
  keyId: string;
  /** What the DER leaf writer needs: issuer name bytes, signature algorithm, key. */
  leaf: LeafIssuer;
  issues: Issue[];
};

// Parsing the issuer and importing its key cost a quarter of each signature: a CA signs with the
// same issuer for its whole life, so the prepared issuer is kept (a few entries, keyed by content).
const prepared = new Map<string, Promise<PreparedIssuer>>();
const PREPARED_MAX = 8;

async function prepareIssuer(ca: CertifiedKey, path: string): Promise<PreparedIssuer> {
  const cert = parseCertificate(ca.certPem, `${path}.certPem`);
  const signer = await importSigner(ca.keyPem, `${path}.keyPem`);
  const issues: Issue[] = [];
  if (!publicKeyOf(cert).spki.equals(spkiOf(signer.keyObject)))
    issues.push({ path: `${path}.keyPem`, message: 'does not match the certificate' });
  if (!canSignCertificates(cert))
    issues.push({ path: `${path}.certPem`, message: `"${cert.subject}" is not a CA allowed to sign certificates` });
  const keyId = await subjectKeyId(cert);
  let leaf: LeafIssuer | undefined;
  try {
    leaf = leafIssuer(Buffer.from(cert.rawData), signer, keyId);
  } catch {
    issues.push({ path: `${path}.certPem`, message: 'is not DER-encoded' });
  }
  return { cert, signer, keyId, leaf: leaf as LeafIssuer, issues };
}

export async function loadIssuer(ca: CertifiedKey, path: string, now: number | undefined) {
  const key = `${path}\u0000${createHash('sha256').update(ca.certPem).update('\u0000').update(ca.keyPem).digest('base64')}`;
  let entry = prepared.get(key);
  if (!entry) {
    entry = prepareIssuer(ca, path);
    prepared.set(key, entry);
    entry.catch(() => prepared.delete(key));
    if (prepared.size > PREPARED_MAX) prepared.delete(prepared.keys().next().value as string);
  }
  const { cert, signer, keyId, leaf, issues: fixed } = await entry;
  const issues = [...fixed];
  if (now !== undefined && (now < cert.notBefore.getTime() || now > cert.notAfter.getTime())) {
    issues.push({
      path: `${path}.certPem`,
      message: `"${cert.subject}" is not valid now (valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()})`,
    });
  }
  if (issues.length) throw new MeshValidationError('unusable issuer', issues);
  return { cert, signer, keyId, leaf };
}

/**
 * Creates an intermediate (signing) CA under `root`: fresh ECDSA P-256 key, CA:TRUE pathLen 0
 * (it signs workloads only), keyCertSign|cRLSign, SKI, AKI = root's key id, random serial, valid
 * from now − 5 min for `validityDays` but never past the root. By default it carries a critical
 * name constraint permitting URI SANs only for the trust domain: RFC 5280 matches a URI constraint
 * against the URI's host, so the constraint is the host `<trustDomain>`, which is how OpenSSL, Go
 * and Node's TLS enforce "only spiffe://<trustDomain>/…" (DNS SANs stay unconstrained).
 */
export async function createIntermediateCa(opts: CreateIntermediateCaOptions): Promise<CertifiedKey> {
  assertTrustDomain(opts.trustDomain);
  const days = opts.validityDays ?? 365;
  checkDays(days, 'validityDays');
  const now = opts.now ?? Date.now();
  const issuer = await loadIssuer(opts.root, 'root', now);
  const keyPem = await generatePrivateKey(opts.key ?? { kind: 'ec' });
  const subject = await importSigner(keyPem, 'key');
  const notAfter = Math.min(now + days * DAY_MS, issuer.cert.notAfter.getTime());
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(subject.publicKey, false, webcrypto),
    new x509.AuthorityKeyIdentifierExtension(issuer.keyId, false),
  ];
  if (opts.nameConstraints ?? true) extensions.push(spiffeNameConstraints(opts.trustDomain));
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: [{ O: [opts.trustDomain] }, { CN: [opts.commonName ?? 'Novamesh Intermediate CA'] }],
      issuer: issuer.cert.subjectName,
      notBefore: new Date(now - CA_BACKDATE_MS),
      notAfter: new Date(notAfter),
      publicKey: subject.publicKey,
      signingKey: issuer.signer.privateKey,
      signingAlgorithm: issuer.signer.signingAlgorithm,
      extensions,
    },
    webcrypto,
  );
  return { certPem: pemText(cert), keyPem };
}
