import { createPrivateKey, createPublicKey, generateKeyPair, type KeyObject, randomBytes, type webcrypto as wc } from 'node:crypto';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { ErrorCode, MeshError, MeshValidationError } from '@novamesh/contracts';
import { invalid } from './errors';
import { webcrypto } from './x509';

/** Key to generate: ECDSA (P-256 by default) or RSA (`bits` 2048 by default; smaller only to build refusal tests). */
export type KeyAlgorithm = { kind: 'ec'; curve?: 'P-256' | 'P-384' } | { kind: 'rsa'; bits?: number };

/** What a public or private key is, as far as this library's policies care. */
export type KeyDescription = { kind: 'ec'; curve: string } | { kind: 'rsa'; bits: number } | { kind: 'other'; type: string };

const CURVE_NAMES: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };

/** Generates a fresh private key and returns it as unencrypted PKCS#8 PEM (held in memory only). */
export async function generatePrivateKey(alg: KeyAlgorithm = { kind: 'ec' }): Promise<string> {
  const privateKey = await new Promise<KeyObject>((resolve, reject) => {
    const done = (err: Error | null, _pub: KeyObject, priv: KeyObject) => (err ? reject(err) : resolve(priv));
    if (alg.kind === 'rsa') generateKeyPair('rsa', { modulusLength: alg.bits ?? 2048 }, done);
    else generateKeyPair('ec', { namedCurve: alg.curve === 'P-384' ? 'secp384r1' : 'prime256v1' }, done);
  });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

export function describeKey(key: KeyObject): KeyDescription {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    const curve = details.namedCurve ?? 'unknown';
    return { kind: 'ec', curve: CURVE_NAMES[curve] ?? curve };
  }
  if (key.asymmetricKeyType === 'rsa') return { kind: 'rsa', bits: details.modulusLength ?? 0 };
  return { kind: 'other', type: key.asymmetricKeyType ?? 'unknown' };
}

export function keyLabel(d: KeyDescription): string {
  if (d.kind === 'ec') return `EC ${d.curve}`;
  if (d.kind === 'rsa') return `RSA ${d.bits} bits`;
  return d.type;
}

/** Parses an unencrypted private key in any PEM form node:crypto reads (PKCS#8, SEC1, PKCS#1). */
export function parsePrivateKey(keyPem: string, path: string): KeyObject {
  try {
    return createPrivateKey({ key: keyPem, format: 'pem' });
  } catch (cause) {
    throw invalid('invalid private key', [{ path, message: 'not a readable unencrypted PEM private key' }], cause);
  }
}

/** A private key imported into WebCrypto for signing, with the signature algorithm its type implies. */
export interface Signer {
  keyObject: KeyObject;
  privateKey: wc.CryptoKey;
  publicKey: wc.CryptoKey;
  /** SHA-256 for P-256 and RSA, SHA-384 for P-384. */
  signingAlgorithm: wc.Algorithm & { hash: string };
  description: KeyDescription;
}

/**
 * Imports a PEM private key (EC P-256/P-384 or RSA ≥ 2048) for use by @peculiar/x509. `allowWeak`
 * admits smaller RSA keys: only for building CSRs the CA must refuse, never for a CA key.
 */
export async function importSigner(keyPem: string, path: string, opts: { allowWeak?: boolean } = {}): Promise<Signer> {
  const keyObject = parsePrivateKey(keyPem, path);
  const description = describeKey(keyObject);
  let alg: { name: string; namedCurve?: string; hash: string };
  if (description.kind === 'ec' && (description.curve === 'P-256' || description.curve === 'P-384')) {
    alg = { name: 'ECDSA', namedCurve: description.curve, hash: description.curve === 'P-384' ? 'SHA-384' : 'SHA-256' };
  } else if (description.kind === 'rsa' && (description.bits >= 2048 || opts.allowWeak)) {
    alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  } else {
    throw new MeshValidationError('unsupported signing key', [
      { path, message: `${keyLabel(description)} cannot sign here (EC P-256, EC P-384 or RSA ≥ 2048 only)` },
    ]);
  }
  const pkcs8 = keyObject.export({ type: 'pkcs8', format: 'der' });
  const spki = createPublicKey(keyObject).export({ type: 'spki', format: 'der' });
  const [privateKey, publicKey] = await Promise.all([
    webcrypto.subtle.importKey('pkcs8', pkcs8, alg, false, ['sign']),
    webcrypto.subtle.importKey('spki', spki, alg, true, ['verify']),
  ]);
  return { keyObject, privateKey, publicKey, signingAlgorithm: { name: alg.name, hash: alg.hash }, description };
}

/** The DER SubjectPublicKeyInfo of a private key, to compare with a certificate's public key. */
export function spkiOf(key: KeyObject): Buffer {
  return createPublicKey(key).export({ type: 'spki', format: 'der' });
}

function checkPassphrase(passphrase: string | undefined): void {
  if (passphrase === '') throw new MeshValidationError('invalid passphrase', [{ path: 'passphrase', message: 'is empty' }]);
}

/**
 * Writes `keyPem` to `path` as PKCS#8 PEM with mode 0600, encrypted (AES-256-CBC, PBKDF2 from the
 * passphrase) when a passphrase is given. The write is atomic (temp file + rename): a crash never
 * leaves a half-written key. Never logs the key; errors carry no key material.
 */
export async function writePrivateKey(path: string, keyPem: string, opts: { passphrase?: string } = {}): Promise<void> {
  checkPassphrase(opts.passphrase);
  const key = parsePrivateKey(keyPem, 'keyPem');
  const out = opts.passphrase
    ? key.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: opts.passphrase })
    : key.export({ type: 'pkcs8', format: 'pem' });
  await writeFileAtomic(path, out as string, 0o600);
}

/**
 * Reads a private key written by {@link writePrivateKey} (or an operator's PEM key) and returns it
 * as unencrypted PKCS#8 PEM in memory. Throws MeshValidationError saying whether the passphrase is
 * missing or wrong, or the file holds no key.
 */
export async function readPrivateKey(path: string, opts: { passphrase?: string } = {}): Promise<string> {
  checkPassphrase(opts.passphrase);
  const text = await readFile(path, 'utf8');
  const encrypted = text.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') || /Proc-Type: 4,ENCRYPTED/.test(text);
  const fail = (message: string, cause?: unknown) => invalid('cannot read private key', [{ path, message }], cause);
  if (encrypted && opts.passphrase === undefined) throw fail('the key is encrypted and no passphrase was given');
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: 'pem', ...(encrypted ? { passphrase: opts.passphrase } : {}) });
  } catch (cause) {
    throw fail(encrypted ? 'cannot decrypt the key: wrong passphrase' : 'not a readable PEM private key', cause);
  }
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** Writes `data` to `path` through a temp file in the same directory, with `mode`, fsynced, then renamed over. */
export async function writeFileAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.chmod(mode); // the umask may have narrowed it; never widened
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (cause) {
    await unlink(tmp).catch(() => {});
    throw new MeshError(ErrorCode.unavailable, `cannot write ${path}`, { cause });
  }
}
