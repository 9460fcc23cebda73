import { createPublicKey, type JsonWebKey, type KeyObject, verify } from 'node:crypto';
import { children, contentOf, DerError, expectTag, NULL, rawOf, readBitStringBytes, readOid, readTop, TAG, type Tlv } from './der';

/** The parts of a PKCS#10 request (RFC 2986) the CA uses, as views into the DER it was read from. */
export interface ParsedCsr {
  /** CertificationRequestInfo, exactly the bytes that are signed. */
  info: Buffer;
  /** SubjectPublicKeyInfo, verbatim. */
  spki: Buffer;
  /** The subjectPublicKey BIT STRING's bytes (what RFC 5280 method 1 hashes for the key identifier). */
  publicKey: Buffer;
  /** The key's algorithm OID, its parameters (DER) if any, and the curve OID when the parameter is one. */
  keyAlgorithm: string;
  keyParameters?: Buffer;
  keyCurve?: string;
  signatureAlgorithm: string;
  signature: Buffer;
  /** GeneralNames DER of the subjectAltName in the extensionRequest attribute, if requested. */
  subjectAltName?: Buffer;
}

const EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const SUBJECT_ALT_NAME = '2.5.29.17';
const EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const RSA_ENCRYPTION = '1.2.840.113549.1.1.1';

/** Reads a DER PKCS#10 request; throws DerError when it is not one. */
export function parseCsr(der: Buffer): ParsedCsr {
  const [infoTlv, algTlv, sigTlv, ...extra] = children(der, readTop(der, TAG.sequence));
  if (extra.length) throw new DerError('a CertificationRequest has three elements');
  const [version, subject, spkiTlv, attributes, ...more] = children(der, expectTag(infoTlv, TAG.sequence));
  expectTag(version, TAG.integer);
  expectTag(subject, TAG.sequence);
  // `attributes` is required by RFC 2986 but some encoders drop it when empty.
  if (more.length || (attributes && attributes.tag !== 0xa0)) throw new DerError('not a CertificationRequestInfo');
  const [keyAlgTlv, keyTlv, ...spkiExtra] = children(der, expectTag(spkiTlv, TAG.sequence));
  if (spkiExtra.length) throw new DerError('not a SubjectPublicKeyInfo');
  const [keyOid, keyParam, ...keyAlgExtra] = children(der, expectTag(keyAlgTlv, TAG.sequence));
  if (keyAlgExtra.length) throw new DerError('not an AlgorithmIdentifier');
  const keyAlgorithm = readOid(der, expectTag(keyOid, TAG.oid));
  const keyCurve = keyParam?.tag === TAG.oid ? readOid(der, keyParam) : undefined;
  const [sigOid] = children(der, expectTag(algTlv, TAG.sequence));
  return {
    info: rawOf(der, infoTlv!),
    spki: rawOf(der, spkiTlv!),
    publicKey: readBitStringBytes(der, keyTlv!),
    keyAlgorithm,
    ...(keyParam ? { keyParameters: rawOf(der, keyParam) } : {}),
    ...(keyCurve ? { keyCurve } : {}),
    signatureAlgorithm: readOid(der, expectTag(sigOid, TAG.oid)),
    signature: readBitStringBytes(der, sigTlv!),
    ...requestedSan(der, attributes),
  };
}

function requestedSan(der: Buffer, attributes: Tlv | undefined): { subjectAltName?: Buffer } {
  for (const attr of attributes ? children(der, attributes) : []) {
    const [type, values] = children(der, expectTag(attr, TAG.sequence));
    if (readOid(der, expectTag(type, TAG.oid)) !== EXTENSION_REQUEST) continue;
    const [extensions] = children(der, expectTag(values, TAG.set));
    for (const ext of children(der, expectTag(extensions, TAG.sequence))) {
      const parts = children(der, expectTag(ext, TAG.sequence));
      if (readOid(der, expectTag(parts[0], TAG.oid)) !== SUBJECT_ALT_NAME) continue;
      return { subjectAltName: contentOf(der, expectTag(parts[parts.length - 1], TAG.octetString)) };
    }
  }
  return {};
}

/**
 * The request's public key as a KeyObject. OpenSSL's SPKI decoder costs ~140 µs a key; EC P-256/P-384
 * points (uncompressed) and RSA keys go in as JWK built from the SPKI instead (~85 µs EC with the
 * point checked on the curve, ~5 µs RSA). Other keys take the DER path. Throws when unreadable.
 */
export function csrPublicKey(csr: ParsedCsr): KeyObject {
  const jwk = jwkOf(csr);
  return jwk ? createPublicKey({ key: jwk, format: 'jwk' }) : createPublicKey({ key: csr.spki, format: 'der', type: 'spki' });
}

const JWK_CURVES: Record<string, { crv: string; size: number }> = {
  '1.2.840.10045.3.1.7': { crv: 'P-256', size: 32 },
  '1.3.132.0.34': { crv: 'P-384', size: 48 },
};

function jwkOf(csr: ParsedCsr): JsonWebKey | undefined {
  const key = csr.publicKey;
  if (csr.keyAlgorithm === EC_PUBLIC_KEY) {
    const curve = csr.keyCurve === undefined ? undefined : JWK_CURVES[csr.keyCurve];
    if (!curve || key.length !== 1 + 2 * curve.size || key[0] !== 0x04) return undefined;
    const x = key.subarray(1, 1 + curve.size).toString('base64url');
    return { kty: 'EC', crv: curve.crv, x, y: key.subarray(1 + curve.size).toString('base64url') };
  }
  // rsaEncryption's parameters are NULL (or absent); anything else is left to OpenSSL to judge.
  if (csr.keyAlgorithm !== RSA_ENCRYPTION || (csr.keyParameters && !csr.keyParameters.equals(NULL))) return undefined;
  try {
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
    const [n, e, ...extra] = children(key, readTop(key, TAG.sequence));
    if (extra.length) return undefined;
    const unsigned = (t: Tlv | undefined) => {
      const bytes = contentOf(key, expectTag(t, TAG.integer));
      let i = 0;
      while (i < bytes.length - 1 && bytes[i] === 0) i++;
      return bytes.subarray(i).toString('base64url');
    };
    return { kty: 'RSA', n: unsigned(n), e: unsigned(e) };
  } catch {
    return undefined;
  }
}

const SIGNATURES: Record<string, { hash: string; key: 'ec' | 'rsa' }> = {
  '1.2.840.10045.4.3.2': { hash: 'sha256', key: 'ec' },
  '1.2.840.10045.4.3.3': { hash: 'sha384', key: 'ec' },
  '1.2.840.10045.4.3.4': { hash: 'sha512', key: 'ec' },
  '1.2.840.113549.1.1.11': { hash: 'sha256', key: 'rsa' },
  '1.2.840.113549.1.1.12': { hash: 'sha384', key: 'rsa' },
  '1.2.840.113549.1.1.13': { hash: 'sha512', key: 'rsa' },
};
const UNSUPPORTED_NAMES: Record<string, string> = {
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.113549.1.1.10': 'RSASSA-PSS',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
  '1.3.101.112': 'Ed25519',
  '1.3.101.113': 'Ed448',
};

/**
 * Why the CSR's signature does not prove possession of its key (undefined when it does): the
 * algorithm must be ECDSA or RSA PKCS#1 v1.5 with SHA-256/384/512, match the key, and verify.
 */
export function csrSignatureProblem(csr: ParsedCsr, key: KeyObject | undefined): string | undefined {
  const alg = SIGNATURES[csr.signatureAlgorithm];
  if (!alg) {
    const name = UNSUPPORTED_NAMES[csr.signatureAlgorithm];
    const label = name ? `${name} (${csr.signatureAlgorithm})` : csr.signatureAlgorithm;
    return `signature algorithm ${label} is not supported (ECDSA or RSA PKCS#1 v1.5 with SHA-256, SHA-384 or SHA-512)`;
  }
  let ok = false;
  try {
    ok = key?.asymmetricKeyType === alg.key && verify(alg.hash, csr.info, { key, dsaEncoding: 'der' }, csr.signature);
  } catch {
    ok = false;
  }
  return ok ? undefined : 'does not verify';
}

// --- GeneralNames (RFC 5280 §4.2.1.6) -----------------------------------------------------------

const NAME_FORMS = ['otherName', 'email', 'dns', 'x400Address', 'directoryName', 'ediPartyName', 'url', 'ip', 'registeredID'];

function ipText(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  if (b.length !== 16) return `#${b.toString('hex')}`;
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  // RFC 5952: the longest run (≥ 2) of zero groups becomes "::".
  let best = { at: -1, len: 1 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.at < 0) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}

/**
 * The names in a GeneralNames DER as `{ type, value }`, types as @peculiar/x509 names them (url,
 * dns, email, ip) or by their ASN.1 name; IP addresses as text, other binary forms as `#hex`.
 */
export function generalNames(der: Buffer): { type: string; value: string }[] {
  return children(der, readTop(der, TAG.sequence)).map((n) => {
    const form = n.tag & 0x1f;
    const type = NAME_FORMS[form];
    if ((n.tag & 0xc0) !== 0x80 || !type) throw new DerError(`not a GeneralName at ${n.start}`);
    const constructed = (n.tag & 0x20) !== 0;
    // otherName, x400Address, directoryName and ediPartyName are constructed; the rest primitive.
    if (constructed !== (form === 0 || form === 3 || form === 4 || form === 5)) throw new DerError(`malformed ${type} at ${n.start}`);
    const content = contentOf(der, n);
    if (form === 1 || form === 2 || form === 6) return { type, value: content.toString('latin1') };
    if (form === 7) return { type, value: ipText(content) };
    if (form === 8) return { type, value: readOid(der, { ...n, tag: TAG.oid }) };
    if (form === 0) return { type, value: readOid(der, expectTag(children(der, n)[0], TAG.oid)) };
    return { type, value: `#${content.toString('hex')}` };
  });
}
