// @peculiar/x509 loads tsyringe, which needs the Reflect metadata polyfill first.
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject, sign, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

/**
 * The workload side of issuance, kept in the SDK because an adapter may not import the CA domain
 * lib (tools/boundaries.spec.ts): a fresh ECDSA P-256 key that never leaves the process, and a
 * PKCS#10 request for `spiffe://<trustDomain>/ns/<namespace>/svc/<service>` plus the DNS names the
 * CA allows by default. The CA, not this code, decides what is acceptable.
 */
export async function createWorkloadCsr(identity: {
  trustDomain: string;
  namespace: string;
  service: string;
}): Promise<{ csrPem: string; keyPem: string; spiffeId: string }> {
  const { trustDomain, namespace, service } = identity;
  const spiffeId = `spiffe://${trustDomain}/ns/${namespace}/svc/${service}`;
  const privateKey = await new Promise<KeyObject>((resolve, reject) =>
    generateKeyPair('ec', { namedCurve: 'prime256v1' }, (err, _pub, priv) => (err ? reject(err) : resolve(priv))),
  );
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const [cryptoPrivate, cryptoPublic] = await Promise.all([
    webcrypto.subtle.importKey('pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }), alg, false, ['sign']),
    webcrypto.subtle.importKey('spki', createPublicKey(privateKey).export({ type: 'spki', format: 'der' }), alg, true, ['verify']),
  ]);
  const dnsNames = [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.${trustDomain}`];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      name: [{ CN: [service] }],
      keys: { privateKey: cryptoPrivate, publicKey: cryptoPublic },
      signingAlgorithm: alg,
      extensions: [
        new x509.SubjectAlternativeNameExtension([
          { type: 'url', value: spiffeId },
          ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
        ]),
      ],
    },
    webcrypto,
  );
  const pem = csr.toString('pem');
  return { csrPem: pem.endsWith('\n') ? pem : `${pem}\n`, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, spiffeId };
}

/**
 * Proof of possession for a renewal: the base64 SHA-256 signature of the CSR text with the current
 * certificate's private key (ECDSA DER or RSA PKCS#1 v1.5), as `mesh.v1.ca.sign` expects.
 */
export function signCsrWithKey(csrPem: string, keyPem: string): string {
  return sign('sha256', Buffer.from(csrPem, 'utf8'), createPrivateKey(keyPem)).toString('base64');
}
