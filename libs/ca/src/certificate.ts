import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { GeneralName, GeneralSubtree, GeneralSubtrees, id_ce_nameConstraints, NameConstraints } from '@peculiar/asn1-x509';
import { invalid } from './errors';
import { describeKey, type KeyDescription } from './keys';
import { pemEncode, singlePem } from './pem';
import { spiffeIdProblem } from './spiffe-id';
import { webcrypto, x509 } from './x509';

/** A certificate and its private key, both PEM (the key unencrypted PKCS#8, in memory only). */
export interface CertifiedKey {
  certPem: string;
  keyPem: string;
}

/** What {@link certificateInfo} reads from a certificate. Times are epoch ms; hex strings lower case. */
export interface CertificateInfo {
  serial: string;
  subject: string;
  issuer: string;
  /** The URI SAN when it is the only one and a Novamesh SPIFFE ID. */
  spiffeId?: string;
  uris: string[];
  dnsNames: string[];
  notBefore: number;
  notAfter: number;
  isCa: boolean;
  /** SHA-256 of the DER encoding: stable identity of this exact certificate. */
  fingerprint256: string;
}

export const DAY_MS = 86_400_000;

// The CA parses the same few certificates (its chain, the roots) on every request; parsed
// certificates are immutable, so the last few are kept by their PEM text.
const parsed = new Map<string, x509.X509Certificate>();
const PARSED_MAX = 64;

export function parseCertificate(pem: string, path: string): x509.X509Certificate {
  const hit = parsed.get(pem);
  if (hit) return hit;
  const der = singlePem(pem, ['CERTIFICATE'], path);
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(der);
  } catch (cause) {
    throw invalid('invalid certificate', [{ path, message: 'not a parseable X.509 certificate' }], cause);
  }
  parsed.set(pem, cert);
  if (parsed.size > PARSED_MAX) parsed.delete(parsed.keys().next().value as string);
  return cert;
}

/** 16 random bytes, first byte 0x01..0x7f so the DER INTEGER is positive and always 16 bytes long. */
export function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f || 0x01;
  return b.toString('hex');
}

export function fingerprint256(cert: x509.X509Certificate): string {
  return createHash('sha256').update(Buffer.from(cert.rawData)).digest('hex');
}

export function sameCertificate(a: x509.X509Certificate, b: x509.X509Certificate): boolean {
  return a === b || Buffer.from(a.rawData).equals(Buffer.from(b.rawData));
}

const pems = new WeakMap<x509.X509Certificate, string>();

/** The certificate as PEM text (computed once per parsed certificate). */
export function certificatePem(cert: x509.X509Certificate): string {
  let pem = pems.get(cert);
  if (pem === undefined) {
    pem = pemEncode(new Uint8Array(cert.rawData), 'CERTIFICATE');
    pems.set(cert, pem);
  }
  return pem;
}

export function publicKeyOf(cert: x509.X509Certificate | x509.Pkcs10CertificateRequest): { spki: Buffer; description: KeyDescription } {
  const spki = Buffer.from(cert.publicKey.rawData);
  // The parsed SPKI already names the curve or modulus size; building a KeyObject from it
  // (EC point validation in OpenSSL) cost a sixth of every signature. Other keys take that path.
  const alg = cert.publicKey.algorithm as { name?: string; namedCurve?: string; modulusLength?: number };
  if (alg.name === 'ECDSA' && (alg.namedCurve === 'P-256' || alg.namedCurve === 'P-384'))
    return { spki, description: { kind: 'ec', curve: alg.namedCurve } };
  if (alg.name?.startsWith('RSA') && typeof alg.modulusLength === 'number')
    return { spki, description: { kind: 'rsa', bits: alg.modulusLength } };
  return { spki, description: describeKey(createPublicKey({ key: spki, format: 'der', type: 'spki' })) };
}

export function basicConstraints(cert: x509.X509Certificate): { ca: boolean; pathLength?: number } {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  return bc ? { ca: bc.ca, ...(bc.pathLength === undefined ? {} : { pathLength: bc.pathLength }) } : { ca: false };
}

/** True when the certificate may sign certificates: CA:TRUE and, if key usage is present, keyCertSign. */
export function canSignCertificates(cert: x509.X509Certificate): boolean {
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  return basicConstraints(cert).ca && (!ku || (ku.usages & x509.KeyUsageFlags.keyCertSign) !== 0);
}

export function isSelfIssued(cert: x509.X509Certificate): boolean {
  return cert.subject === cert.issuer;
}

export async function subjectKeyId(cert: x509.X509Certificate): Promise<string> {
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski) return ski.keyId;
  return (await x509.SubjectKeyIdentifierExtension.create(cert.publicKey, false, webcrypto)).keyId;
}

/** The SAN entries of a certificate or a parsed SAN extension, as `{ type, value }` (types: url, dns, ip, email, …). */
export function sanNames(source: x509.X509Certificate | x509.Extension | null): { type: string; value: string }[] {
  const ext = source instanceof x509.X509Certificate ? source.getExtension('2.5.29.17') : source;
  if (!ext) return [];
  const san = ext instanceof x509.SubjectAlternativeNameExtension ? ext : new x509.SubjectAlternativeNameExtension(ext.rawData);
  return san.names.items.map((n) => ({ type: n.type, value: n.value }));
}

/** Reads serial, names, SANs, validity and CA flag of a PEM certificate; throws MeshValidationError at `certPem` if unparseable. */
export function certificateInfo(pem: string): CertificateInfo {
  const cert = parseCertificate(pem, 'certPem');
  const names = sanNames(cert);
  const uris = names.filter((n) => n.type === 'url').map((n) => n.value);
  const only = uris.length === 1 ? uris[0] : undefined;
  return {
    serial: cert.serialNumber.toLowerCase(),
    subject: cert.subject,
    issuer: cert.issuer,
    ...(only !== undefined && spiffeIdProblem(only) === undefined ? { spiffeId: only } : {}),
    uris,
    dnsNames: names.filter((n) => n.type === 'dns').map((n) => n.value),
    notBefore: cert.notBefore.getTime(),
    notAfter: cert.notAfter.getTime(),
    isCa: basicConstraints(cert).ca,
    fingerprint256: fingerprint256(cert),
  };
}

// --- name constraints (RFC 5280 §4.2.1.10), URI and DNS forms only -------------------------------

/** A URI name constraint names a host: `host` matches exactly, `.host` any subdomain of it. */
function hostMatches(host: string, base: string): boolean {
  const h = host.toLowerCase();
  const b = base.toLowerCase();
  return b.startsWith('.') ? h.endsWith(b) : h === b;
}

/** A DNS name constraint `example.com` matches it and every subdomain. */
function dnsMatches(name: string, base: string): boolean {
  const n = name.toLowerCase();
  const b = base.toLowerCase().replace(/^\./, '');
  return b === '' || n === b || n.endsWith(`.${b}`);
}

function uriHost(uri: string): string | undefined {
  return /^[a-z][a-z0-9+.-]*:\/\/([^/:?#]+)/i.exec(uri)?.[1];
}

/** The URI name constraint this library puts on intermediates: only SPIFFE IDs of `trustDomain`. */
export function spiffeNameConstraints(trustDomain: string): x509.Extension {
  const nc = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees([new GeneralSubtree({ base: new GeneralName({ uniformResourceIdentifier: trustDomain }) })]),
  });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(nc));
}

type ParsedConstraints = { permitted: ConstraintNames; excluded: ConstraintNames } | string | undefined;
type ConstraintNames = { uri: string[]; dns: string[]; other: number };

// A CA's name constraints are checked on every signature: parsed once per parsed certificate.
const constraints = new WeakMap<x509.X509Certificate, ParsedConstraints>();

/** The CA's URI and DNS name constraints, a problem sentence, or undefined when it has none. */
function constraintsOf(ca: x509.X509Certificate): ParsedConstraints {
  if (constraints.has(ca)) return constraints.get(ca);
  const parsed = readConstraints(ca);
  constraints.set(ca, parsed);
  return parsed;
}

function readConstraints(ca: x509.X509Certificate): ParsedConstraints {
  const ext = ca.getExtension(id_ce_nameConstraints);
  if (!ext) return undefined;
  let nc: NameConstraints;
  try {
    nc = AsnConvert.parse(ext.value, NameConstraints);
  } catch {
    return `name constraints of "${ca.subject}" do not parse`;
  }
  const read = (subtrees: NameConstraints['permittedSubtrees']) => {
    const out: ConstraintNames = { uri: [], dns: [], other: 0 };
    for (const s of subtrees ?? []) {
      if (s.base.uniformResourceIdentifier !== undefined) out.uri.push(s.base.uniformResourceIdentifier);
      else if (s.base.dNSName !== undefined) out.dns.push(s.base.dNSName);
      else out.other++;
    }
    return out;
  };
  const permitted = read(nc.permittedSubtrees);
  const excluded = read(nc.excludedSubtrees);
  if (permitted.other || excluded.other) return `name constraints of "${ca.subject}" use a form other than URI or DNS`;
  return { permitted, excluded };
}

/**
 * Why `names` (SAN entries of a certificate issued below `ca`) break the CA's name constraints, or
 * undefined when they do not. Constraint forms other than URI and DNS are refused as not understood.
 */
export function nameConstraintProblem(ca: x509.X509Certificate, names: { type: string; value: string }[]): string | undefined {
  const nc = constraintsOf(ca);
  if (nc === undefined || typeof nc === 'string') return nc;
  const { permitted, excluded } = nc;
  for (const { type, value } of names) {
    if (type === 'url') {
      const host = uriHost(value);
      if (host === undefined) return `URI ${value} has no host to check against the name constraints of "${ca.subject}"`;
      if (permitted.uri.length && !permitted.uri.some((b) => hostMatches(host, b)))
        return `URI ${value} is outside the names permitted by "${ca.subject}"`;
      if (excluded.uri.some((b) => hostMatches(host, b))) return `URI ${value} is excluded by "${ca.subject}"`;
    } else if (type === 'dns') {
      if (permitted.dns.length && !permitted.dns.some((b) => dnsMatches(value, b)))
        return `DNS name ${value} is outside the names permitted by "${ca.subject}"`;
      if (excluded.dns.some((b) => dnsMatches(value, b))) return `DNS name ${value} is excluded by "${ca.subject}"`;
    }
  }
  return undefined;
}
