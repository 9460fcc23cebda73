import { createHash, type KeyObject, sign } from 'node:crypto';
import {
  bitString,
  boolean,
  children,
  expectTag,
  explicit,
  ia5String,
  implicit,
  integer,
  NULL,
  namedBits,
  octetString,
  oid,
  rawOf,
  readTop,
  sequence,
  set,
  smallInteger,
  TAG,
  time,
  utf8String,
} from './der';
import type { Signer } from './keys';

/** What signing a leaf needs from its issuer, prepared once per issuer (see loadIssuer). */
export interface LeafIssuer {
  /** The issuer certificate's subject Name, DER, verbatim: the leaf's issuer field. */
  name: Buffer;
  /** AlgorithmIdentifier of the issuer's signatures, DER. */
  algorithm: Buffer;
  hash: string;
  key: KeyObject;
  /** The leaf's AuthorityKeyIdentifier extension, DER (the same for every leaf). */
  authorityKeyId: Buffer;
}

export interface LeafFields {
  /** Lower-case hex of a positive serial (see randomSerial). */
  serial: string;
  /** Epoch ms, whole seconds (DER times carry no milliseconds). */
  notBefore: number;
  notAfter: number;
  subject: { trustDomain: string; namespace: string; service: string };
  /** The CSR's SubjectPublicKeyInfo DER, and the bytes of its subjectPublicKey BIT STRING. */
  spki: Buffer;
  publicKey: Buffer;
  rsa: boolean;
  uri: string;
  dnsNames: readonly string[];
}

const ECDSA_SHA256 = '1.2.840.10045.4.3.2';
const ECDSA_SHA384 = '1.2.840.10045.4.3.3';
const SHA256_RSA = '1.2.840.113549.1.1.11';

function extension(id: string, critical: boolean, value: Uint8Array): Buffer {
  return critical ? sequence(oid(id), boolean(true), octetString(value)) : sequence(oid(id), octetString(value));
}

const VERSION_3 = explicit(0, smallInteger(2));
const BASIC_CONSTRAINTS_LEAF = extension('2.5.29.19', true, sequence()); // cA DEFAULT FALSE is omitted in DER
const KEY_USAGE_EC = extension('2.5.29.15', true, namedBits([0])); // digitalSignature
const KEY_USAGE_RSA = extension('2.5.29.15', true, namedBits([0, 2])); // + keyEncipherment
const SERVER_AND_CLIENT_AUTH = extension('2.5.29.37', false, sequence(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2')));

/** Reads what leaf signing needs from the issuer's certificate (DER) and imported key; throws DerError on a malformed certificate. */
export function leafIssuer(certDer: Buffer, signer: Signer, keyId: string): LeafIssuer {
  const [tbs] = children(certDer, readTop(certDer, TAG.sequence));
  const fields = children(certDer, expectTag(tbs, TAG.sequence));
  const first = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] version, absent for v1
  const name = rawOf(certDer, expectTag(fields[first + 4], TAG.sequence)); // serial, signature, issuer, validity, subject
  const { description } = signer;
  const p384 = description.kind === 'ec' && description.curve === 'P-384';
  const algorithm = description.kind === 'rsa' ? sequence(oid(SHA256_RSA), NULL) : sequence(oid(p384 ? ECDSA_SHA384 : ECDSA_SHA256));
  return {
    name: Buffer.from(name),
    algorithm,
    hash: p384 ? 'sha384' : 'sha256',
    key: signer.keyObject,
    authorityKeyId: extension('2.5.29.35', false, sequence(implicit(0, Buffer.from(keyId, 'hex')))),
  };
}

const rdn = (type: string, value: string) => set(sequence(oid(type), utf8String(value)));

/**
 * The DER of a workload certificate: v3, the given serial and validity, subject O/OU/CN, the CSR's
 * key verbatim, CA:FALSE and digitalSignature (+keyEncipherment for RSA) critical, serverAuth +
 * clientAuth, SAN URI + DNS, SKI (SHA-1 of the key, RFC 5280 method 1), AKI; signed by `issuer`.
 */
export function signLeaf(issuer: LeafIssuer, leaf: LeafFields): Buffer {
  const { trustDomain, namespace, service } = leaf.subject;
  const san = sequence(ia5String(leaf.uri, 6), ...leaf.dnsNames.map((name) => ia5String(name, 2)));
  const tbs = sequence(
    VERSION_3,
    integer(Buffer.from(leaf.serial, 'hex')),
    issuer.algorithm,
    issuer.name,
    sequence(time(leaf.notBefore), time(leaf.notAfter)),
    sequence(rdn('2.5.4.10', trustDomain), rdn('2.5.4.11', namespace), rdn('2.5.4.3', service)),
    leaf.spki,
    explicit(
      3,
      sequence(
        BASIC_CONSTRAINTS_LEAF,
        leaf.rsa ? KEY_USAGE_RSA : KEY_USAGE_EC,
        SERVER_AND_CLIENT_AUTH,
        extension('2.5.29.17', false, san),
        extension('2.5.29.14', false, octetString(createHash('sha1').update(leaf.publicKey).digest())),
        issuer.authorityKeyId,
      ),
    ),
  );
  return sequence(tbs, issuer.algorithm, bitString(sign(issuer.hash, tbs, issuer.key)));
}
