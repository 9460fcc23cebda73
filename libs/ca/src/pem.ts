import { MeshValidationError } from '@novamesh/contracts';

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]*?)-----END \1-----/g;

/** The PEM blocks in `text` with their labels, in order; anything between blocks is ignored. */
export function pemBlocks(text: string): { label: string; der: Buffer }[] {
  return [...text.matchAll(BLOCK)].map((m) => ({
    label: m[1] as string,
    der: Buffer.from((m[2] as string).replace(/\s+/g, ''), 'base64'),
  }));
}

/** Exactly one PEM block with one of `labels`, or a MeshValidationError at `path`. */
export function singlePem(text: string, labels: readonly string[], path: string): Buffer {
  const blocks = typeof text === 'string' ? pemBlocks(text) : [];
  const what = labels[0] as string;
  if (blocks.length !== 1) {
    const message = blocks.length === 0 ? `not a PEM ${what}` : `expected one PEM block, found ${blocks.length}`;
    throw new MeshValidationError(`invalid ${what}`, [{ path, message }]);
  }
  const block = blocks[0]!;
  if (!labels.includes(block.label) || block.der.length === 0) {
    throw new MeshValidationError(`invalid ${what}`, [{ path, message: `not a PEM ${what} (found ${block.label})` }]);
  }
  return block.der;
}

/** PEM text of an @peculiar/x509 object, newline-terminated like a PEM file. */
export function pemText(obj: { toString(format: 'pem'): string }): string {
  const text = obj.toString('pem');
  return text.endsWith('\n') ? text : `${text}\n`;
}

/** PEM text of DER bytes under `label`: base64 in 64-character lines, newline-terminated (as {@link pemText} writes it). */
export function pemEncode(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let body = '';
  for (let i = 0; i < b64.length; i += 64) body += `${b64.slice(i, i + 64)}\n`;
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}
