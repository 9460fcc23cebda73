import { id_ce_nameConstraints } from '@peculiar/asn1-x509';
import { basicConstraints, canSignCertificates, nameConstraintProblem, sanNames } from './certificate';
import { pemBlocks } from './pem';
import { spiffeIdProblem } from './spiffe-id';
import { webcrypto, x509 } from './x509';

/** Outcome of {@link verifyChain}: the verified SPIFFE ID, or one sentence saying why not. */
export type ChainVerdict = { ok: true; spiffeId: string } | { ok: false; reason: string };

export interface VerifyChainOptions {
  /** The leaf, PEM; if it is a bundle (like `chainPem`), the certificates after the first count as intermediates. */
  leafPem: string;
  /** Intermediates (any order; a root here is harmless). */
  chainPems: readonly string[];
  /** The trust bundle: roots accepted as anchors. */
  trustedRootPems: readonly string[];
  /** Epoch ms; default Date.now(). */
  now?: number;
}

const MAX_DEPTH = 8;
// Extensions whose meaning this verifier applies; any other extension marked critical fails the path (RFC 5280 §4.2).
const UNDERSTOOD = new Set(['2.5.29.19', '2.5.29.15', '2.5.29.37', '2.5.29.17', id_ce_nameConstraints, '2.5.29.14', '2.5.29.35']);

function parseAll(texts: readonly string[]): x509.X509Certificate[] | string {
  const out: x509.X509Certificate[] = [];
  for (const text of texts) {
    const blocks = pemBlocks(text).filter((b) => b.label === 'CERTIFICATE');
    if (blocks.length === 0) return 'not a PEM certificate';
    for (const b of blocks) {
      try {
        out.push(new x509.X509Certificate(b.der));
      } catch {
        return 'not a parseable X.509 certificate';
      }
    }
  }
  return out;
}

function timeProblem(cert: x509.X509Certificate, now: number): string | undefined {
  if (now > cert.notAfter.getTime()) return `expired: "${cert.subject}" was valid until ${cert.notAfter.toISOString()}`;
  if (now < cert.notBefore.getTime()) return `not yet valid: "${cert.subject}" is valid from ${cert.notBefore.toISOString()}`;
  return undefined;
}

function extensionProblem(cert: x509.X509Certificate): string | undefined {
  const unknown = cert.extensions.find((e) => e.critical && !UNDERSTOOD.has(e.type));
  return unknown ? `"${cert.subject}" has critical extension ${unknown.type} that is not understood` : undefined;
}

async function signedBy(cert: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  if (cert.issuer !== issuer.subject) return false;
  return cert.verify({ publicKey: issuer.publicKey, signatureOnly: true }, webcrypto).catch(() => false);
}

/**
 * Verifies a workload certificate the way a mesh peer does: builds a path from the leaf through
 * `chainPems` to one of `trustedRootPems`, checking each signature, validity at `now`, CA:TRUE and
 * keyCertSign on every issuer, path length limits, URI/DNS name constraints, no unknown critical
 * extension, a non-CA leaf, and that the leaf's only URI SAN is a Novamesh SPIFFE ID. Pure; never throws.
 */
export async function verifyChain(opts: VerifyChainOptions): Promise<ChainVerdict> {
  const now = opts.now ?? Date.now();
  const leafBundle = parseAll([opts.leafPem]);
  if (typeof leafBundle === 'string') return { ok: false, reason: `leaf: ${leafBundle}` };
  const intermediatesOrError = parseAll(opts.chainPems);
  if (typeof intermediatesOrError === 'string') return { ok: false, reason: `chain: ${intermediatesOrError}` };
  const roots = parseAll(opts.trustedRootPems);
  if (typeof roots === 'string') return { ok: false, reason: `trusted roots: ${roots}` };
  if (roots.length === 0) return { ok: false, reason: 'no trusted roots given' };
  const [leaf, ...bundled] = leafBundle as [x509.X509Certificate, ...x509.X509Certificate[]];
  const intermediates = [...bundled, ...intermediatesOrError];

  if (basicConstraints(leaf).ca) return { ok: false, reason: `leaf "${leaf.subject}" is a CA certificate` };
  const names = sanNames(leaf);
  const uris = names.filter((n) => n.type === 'url');
  if (uris.length !== 1) return { ok: false, reason: `leaf has ${uris.length} URI SANs; exactly one SPIFFE ID is required` };
  const id = uris[0]!.value;
  const idProblem = spiffeIdProblem(id);
  if (idProblem) return { ok: false, reason: `leaf URI SAN is not a Novamesh SPIFFE ID: ${idProblem}` };

  let current = leaf;
  const below: x509.X509Certificate[] = []; // CA certificates between the leaf and the next issuer
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const problem = timeProblem(current, now) ?? extensionProblem(current);
    if (problem) return { ok: false, reason: problem };

    let issuer: x509.X509Certificate | undefined;
    let trusted = false;
    for (const candidate of [...roots, ...intermediates]) {
      if (candidate !== current && (await signedBy(current, candidate))) {
        issuer = candidate;
        trusted = roots.includes(candidate);
        break;
      }
    }
    if (!issuer) {
      const named = [...roots, ...intermediates].some((c) => c.subject === current.issuer);
      return {
        ok: false,
        reason: named
          ? `signature of "${current.subject}" does not verify with any certificate named "${current.issuer}"`
          : `untrusted: no trusted root or given intermediate issued "${current.subject}" (issuer "${current.issuer}")`,
      };
    }
    if (!canSignCertificates(issuer)) return { ok: false, reason: `"${issuer.subject}" is not a CA allowed to sign certificates` };
    const pathLength = basicConstraints(issuer).pathLength;
    if (pathLength !== undefined && below.length > pathLength) {
      return { ok: false, reason: `"${issuer.subject}" allows ${pathLength} CA certificates below it, the path has ${below.length}` };
    }
    const ncProblem = nameConstraintProblem(issuer, names);
    if (ncProblem) return { ok: false, reason: ncProblem };
    if (trusted) {
      const rootProblem = timeProblem(issuer, now) ?? extensionProblem(issuer);
      return rootProblem ? { ok: false, reason: rootProblem } : { ok: true, spiffeId: id };
    }
    below.push(issuer);
    current = issuer;
  }
  return { ok: false, reason: `no trusted root within ${MAX_DEPTH} certificates` };
}
