import { generatePrivateKey, importSigner, type KeyAlgorithm } from './keys';
import { pemText } from './pem';
import { parseSpiffeId } from './spiffe-id';
import { webcrypto, x509 } from './x509';

export interface CreateCsrOptions {
  /** A key to reuse (`{ keyPem }`) or one to generate; default a fresh ECDSA P-256 key. */
  keyPair?: KeyAlgorithm | { keyPem: string };
  /** The workload's SPIFFE ID, put in the CSR as its only URI SAN. */
  spiffeId: string;
  dnsNames?: readonly string[];
}

/**
 * The workload side of issuance: a PKCS#10 CSR signed with its own key (proof of possession),
 * SAN = the SPIFFE ID + DNS names, subject CN = the SPIFFE ID's service. Returns the key as
 * unencrypted PKCS#8 PEM, in memory only. RSA keys of any size are allowed here so tests can build
 * requests the CA must refuse; the CA, not this function, enforces key policy.
 */
export async function createCsr(opts: CreateCsrOptions): Promise<{ csrPem: string; keyPem: string }> {
  const id = parseSpiffeId(opts.spiffeId);
  const keyPem = opts.keyPair && 'keyPem' in opts.keyPair ? opts.keyPair.keyPem : await generatePrivateKey(opts.keyPair);
  const signer = await importSigner(keyPem, 'keyPair.keyPem', { allowWeak: true });
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: [{ CN: [id.service] }],
      keys: { privateKey: signer.privateKey, publicKey: signer.publicKey },
      signingAlgorithm: signer.signingAlgorithm,
      extensions: [
        new x509.SubjectAlternativeNameExtension([
          { type: 'url', value: id.uri },
          ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
        ]),
      ],
    },
    webcrypto,
  );
  return { csrPem: pemText(csr), keyPem };
}
