/**
 * @novamesh/ca — the mesh's certificate authority as plain TypeScript: root and intermediate
 * creation, plug-in CAs, SPIFFE IDs, workload CSR checking and signing, chain verification and
 * private-key files. No NATS, no Nest, no logging: refusals are MeshValidationError (code
 * MESH_INVALID) with `issues[{ path, message }]`.
 *
 * Crypto libraries, and why:
 * - node:crypto generates every key (ECDSA P-256 by default, RSA on request), reads keys in any PEM
 *   form, and writes them as PKCS#8, encrypted with AES-256-CBC (PBKDF2) when a passphrase is
 *   configured — built into Node, OpenSSL-backed, nothing to install.
 * - @peculiar/x509 (on node:crypto's WebCrypto) builds and parses certificates and CSRs and checks
 *   their signatures. The issue named node-forge, but node-forge's X.509 code signs and verifies
 *   RSA only; a P-256 CA needs ECDSA, and one library for both key types is simpler than two code
 *   paths, so node-forge is not used at all. @peculiar/x509 needs `reflect-metadata` loaded first
 *   (its tsyringe dependency checks at load time); `./x509` does that.
 * - @peculiar/asn1-x509 + asn1-schema (already under @peculiar/x509) encode and decode the
 *   NameConstraints extension, which @peculiar/x509 has no class for.
 * - Workload signing (the CA's hot path) does no per-certificate work in them: a small DER reader
 *   and writer (`./der`) read the CSR in place and write the leaf, node:crypto verifies the CSR and
 *   signs the leaf with the issuer's prepared key; CA certificates and their name constraints are
 *   parsed once and cached. Their pure-JavaScript ASN.1 cost ~5 ms a certificate; this ~0.3 ms.
 * openssl(1) and Node's TLS accept what this library issues; the specs prove it.
 */
export {
  CA_BACKDATE_MS,
  type CreateIntermediateCaOptions,
  type CreateRootCaOptions,
  createIntermediateCa,
  createRootCa,
} from './authority';
export {
  beginRootRotation,
  CA_FILES,
  CA_ROTATION_DIRS,
  finishRootRotation,
  type LoadedCa,
  type LoadOrCreateCaOptions,
  loadOrCreateCa,
  rootRotationInProgress,
} from './ca-store';
export { type CertificateInfo, type CertifiedKey, certificateInfo } from './certificate';
export { type ChainVerdict, type VerifyChainOptions, verifyChain } from './chain';
export { type CreateCsrOptions, createCsr } from './csr';
export { generatePrivateKey, type KeyAlgorithm, readPrivateKey, writePrivateKey } from './keys';
export { parseSpiffeId, spiffeId, type WorkloadIdentity } from './spiffe-id';
export {
  DEFAULT_BACKDATE_MS,
  DEFAULT_LIFETIME_MS,
  defaultDnsNames,
  type IssuedCertificate,
  type SignWorkloadCsrOptions,
  signWorkloadCsr,
} from './workload-signer';
