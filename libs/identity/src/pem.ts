import { X509Certificate } from 'node:crypto';

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The PEM certificate blocks of a text, in order (anything between them is ignored). */
export function certificateBlocks(text: string): string[] {
  return text.match(CERT_BLOCK) ?? [];
}

/** Parses every certificate block; throws the parser's error for the first bad one. */
export function parseCertificates(text: string): X509Certificate[] {
  return certificateBlocks(text).map((pem) => new X509Certificate(pem));
}

/**
 * A serial as the CA writes it (lower-case hex, no separators, no leading zeros beyond one byte):
 * Node prints serials in upper case and OpenSSL may drop or keep a leading zero, so both sides
 * of a revocation comparison go through this.
 */
export function normalizeSerial(serial: string): string {
  const hex = serial.toLowerCase().replace(/[^0-9a-f]/g, '');
  return hex.replace(/^0+(?=[0-9a-f])/, '') || '0';
}

/** The first `spiffe://` URI SAN of a certificate, or undefined. */
export function spiffeIdOf(cert: X509Certificate): string | undefined {
  // Node renders SANs as `URI:spiffe://…, DNS:…` (values with commas are quoted; SPIFFE IDs have none).
  for (const part of (cert.subjectAltName ?? '').split(/,\s*/)) {
    if (part.startsWith('URI:spiffe://')) return part.slice(4);
  }
  return undefined;
}
