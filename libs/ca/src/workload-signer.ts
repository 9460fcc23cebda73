import type { KeyObject } from 'node:crypto';
import { type Issue, MeshValidationError } from '@novamesh/contracts';
import { loadIssuer } from './authority';
import {
  type CertifiedKey,
  certificatePem,
  isSelfIssued,
  nameConstraintProblem,
  parseCertificate,
  randomSerial,
  sameCertificate,
} from './certificate';
import { csrPublicKey, csrSignatureProblem, generalNames, type ParsedCsr, parseCsr } from './csr-der';
import { invalid } from './errors';
import { describeKey, keyLabel } from './keys';
import { signLeaf } from './leaf-der';
import { pemEncode, singlePem } from './pem';
import { spiffeId, spiffeIdProblem, type WorkloadIdentity } from './spiffe-id';

export const DEFAULT_LIFETIME_MS = 24 * 3_600_000;
export const DEFAULT_BACKDATE_MS = 5 * 60_000;
const MIN_RSA_BITS = 2048;

export interface SignWorkloadCsrOptions {
  /** PKCS#10 request, PEM. Its subject and requested extensions are ignored; only key and SANs count. */
  csrPem: string;
  /** The signing CA (normally the intermediate). */
  issuer: CertifiedKey;
  /** The issuer's certificate first, then up to and including the root. */
  chainPems: readonly string[];
  /** Who the caller proved the workload is; the CSR's URI SAN must be exactly this SPIFFE ID. */
  identity: WorkloadIdentity;
  /** DNS SANs the workload may have; default {@link defaultDnsNames}. Compared case-insensitively. */
  allowedDnsNames?: readonly string[] | ((name: string) => boolean);
  /** Default 24 h; cut to the issuer's notAfter. */
  lifetimeMs?: number;
  /** How far notBefore lies before `now`, for clock skew; default 5 min. */
  backdateMs?: number;
  /** Epoch ms; default Date.now(). */
  now?: number;
}

/** An issued workload certificate (an X.509-SVID). Times are epoch ms, the serial lower-case hex. */
export interface IssuedCertificate {
  certPem: string;
  /** Leaf then intermediates (no self-signed root): what a workload presents in TLS. */
  chainPem: string;
  serial: string;
  notBefore: number;
  notAfter: number;
  spiffeId: string;
}

/** The DNS names a workload gets by default: `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.<trust-domain>`. */
export function defaultDnsNames(identity: WorkloadIdentity): string[] {
  const { service, namespace, trustDomain } = identity;
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.${trustDomain}`];
}

const HOST = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

function dnsAllowed(allowed: SignWorkloadCsrOptions['allowedDnsNames'], identity: WorkloadIdentity): (name: string) => boolean {
  if (typeof allowed === 'function') return allowed;
  const set = new Set((allowed ?? defaultDnsNames(identity)).map((n) => n.toLowerCase()));
  return (name) => set.has(name.toLowerCase());
}

/** The refusals a CSR earns, each `{ path: 'csr.<part>', message }`; empty when it may be signed. */
function csrIssues(
  csr: ParsedCsr,
  expected: string,
  allowed: (name: string) => boolean,
): { issues: Issue[]; dnsNames: string[]; rsa: boolean } {
  const issues: Issue[] = [];
  let keyObject: KeyObject | undefined;
  try {
    keyObject = csrPublicKey(csr);
  } catch {
    // reported below, and the signature cannot verify
  }
  const signatureProblem = csrSignatureProblem(csr, keyObject);
  if (signatureProblem) issues.push({ path: 'csr.signature', message: signatureProblem });

  let rsa = false;
  if (!keyObject) {
    issues.push({ path: 'csr.key', message: 'the public key cannot be read' });
  } else {
    const key = describeKey(keyObject);
    rsa = key.kind === 'rsa';
    if (key.kind === 'rsa' && key.bits < MIN_RSA_BITS) {
      issues.push({ path: 'csr.key', message: `RSA ${key.bits} bits is weaker than ${MIN_RSA_BITS}` });
    } else if (key.kind === 'other' || (key.kind === 'ec' && key.curve !== 'P-256' && key.curve !== 'P-384')) {
      issues.push({ path: 'csr.key', message: `${keyLabel(key)} is not allowed (EC P-256, EC P-384 or RSA ≥ ${MIN_RSA_BITS})` });
    }
  }

  const dnsNames: string[] = [];
  let names: { type: string; value: string }[];
  try {
    names = csr.subjectAltName ? generalNames(csr.subjectAltName) : [];
  } catch {
    issues.push({ path: 'csr.san', message: 'the requested subjectAltName does not parse' });
    return { issues, dnsNames, rsa };
  }
  const uris = names.filter((n) => n.type === 'url');
  if (uris.length !== 1) {
    issues.push({ path: 'csr.san', message: `expected exactly one URI SAN (the SPIFFE ID ${expected}), found ${uris.length}` });
  } else {
    const uri = uris[0]!.value;
    const problem = spiffeIdProblem(uri);
    if (problem) issues.push({ path: 'csr.san', message: `URI ${uri} is not a SPIFFE ID: ${problem}` });
    else if (uri !== expected) issues.push({ path: 'csr.san', message: `URI ${uri} does not match the identity ${expected}` });
  }
  for (const { type, value } of names) {
    if (type === 'url') continue;
    if (type !== 'dns') issues.push({ path: 'csr.san', message: `${type} name ${value} is not allowed (only URI and DNS)` });
    else if (!HOST.test(value)) issues.push({ path: 'csr.san', message: `DNS name ${value} is not a valid host name` });
    else if (!allowed(value)) issues.push({ path: 'csr.san', message: `DNS name ${value} is not allowed` });
    else dnsNames.push(value.toLowerCase());
  }
  return { issues, dnsNames: [...new Set(dnsNames)], rsa };
}

/**
 * Signs a workload's CSR after checking it: the CSR signature verifies (proof of key possession),
 * the key is EC P-256/P-384 or RSA ≥ 2048, there is exactly one URI SAN and it equals the SPIFFE
 * ID of `identity`, every DNS SAN is allowed, and the names fit the chain's name constraints. Every refusal is listed at once in a
 * MeshValidationError (code MESH_INVALID) with paths `csr`, `csr.signature`, `csr.key`, `csr.san`,
 * `identity`.
 * The leaf is CA:FALSE, digitalSignature (+keyEncipherment for RSA), serverAuth+clientAuth, SAN
 * URI + DNS, SKI/AKI, random serial, valid from now − backdate to now + lifetime (whole seconds, as
 * returned). The CSR is read and the leaf written with `./der` and node:crypto, not @peculiar/x509
 * (see `./csr-der`, `./leaf-der`). Stateless; safe to call concurrently.
 */
export async function signWorkloadCsr(opts: SignWorkloadCsrOptions): Promise<IssuedCertificate> {
  const now = opts.now ?? Date.now();
  const lifetimeMs = opts.lifetimeMs ?? DEFAULT_LIFETIME_MS;
  const backdateMs = opts.backdateMs ?? DEFAULT_BACKDATE_MS;
  const optionIssues: Issue[] = [];
  if (!(lifetimeMs > 0)) optionIssues.push({ path: 'lifetimeMs', message: `must be positive, got ${lifetimeMs}` });
  if (!(backdateMs >= 0)) optionIssues.push({ path: 'backdateMs', message: `must be zero or more, got ${backdateMs}` });
  let expected = '';
  try {
    expected = spiffeId(opts.identity);
  } catch (err) {
    if (!(err instanceof MeshValidationError)) throw err;
    optionIssues.push(...err.issues.map((i) => ({ path: `identity.${i.path}`, message: i.message })));
  }
  if (optionIssues.length) throw new MeshValidationError('invalid signing request', optionIssues);

  const issuer = await loadIssuer(opts.issuer, 'issuer', now);
  const chain = opts.chainPems.map((pem, i) => parseCertificate(pem, `chainPems[${i}]`));
  if (!chain[0] || !sameCertificate(chain[0], issuer.cert)) {
    throw new MeshValidationError('invalid chain', [{ path: 'chainPems[0]', message: 'must be the issuer certificate' }]);
  }

  const der = singlePem(opts.csrPem, ['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST'], 'csr');
  let csr: ParsedCsr;
  try {
    csr = parseCsr(der);
  } catch (cause) {
    throw invalid('certificate signing request refused', [{ path: 'csr', message: 'not a parseable PKCS#10 request' }], cause);
  }
  const { issues, dnsNames, rsa } = csrIssues(csr, expected, dnsAllowed(opts.allowedDnsNames, opts.identity));
  // Never issue what a peer would reject: the names must fit every name constraint up the chain.
  const names = [{ type: 'url', value: expected }, ...dnsNames.map((value) => ({ type: 'dns', value }))];
  for (const ca of chain) {
    const problem = nameConstraintProblem(ca, names);
    if (problem) issues.push({ path: 'identity', message: problem });
  }
  if (issues.length) throw new MeshValidationError('certificate signing request refused', issues);

  // DER times hold whole seconds: what is returned is exactly what the certificate says.
  const notBefore = wholeSeconds(now - backdateMs);
  const notAfter = wholeSeconds(Math.min(now + lifetimeMs, issuer.cert.notAfter.getTime()));
  const serial = randomSerial();
  const leaf = signLeaf(issuer.leaf, {
    serial,
    notBefore,
    notAfter,
    subject: opts.identity,
    spki: csr.spki,
    publicKey: csr.publicKey,
    rsa,
    uri: expected,
    dnsNames,
  });
  const certPem = pemEncode(leaf, 'CERTIFICATE');
  const intermediates = chain.filter((c) => !isSelfIssued(c)).map(certificatePem);
  return { certPem, chainPem: [certPem, ...intermediates].join(''), serial, notBefore, notAfter, spiffeId: expected };
}

const wholeSeconds = (ms: number) => Math.floor(ms / 1000) * 1000;
