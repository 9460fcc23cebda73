import { createPrivateKey } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MeshValidationError } from '@novamesh/contracts';
import { describe, expect, it } from 'vitest';
import { openssl, tempDir } from './ca.spec-helper';
import { generatePrivateKey, readPrivateKey, writePrivateKey } from './index';

const mode = (path: string) => statSync(path).mode & 0o777;
const sameKey = (a: string, b: string) =>
  createPrivateKey(a)
    .export({ type: 'pkcs8', format: 'der' })
    .equals(createPrivateKey(b).export({ type: 'pkcs8', format: 'der' }));

describe('writePrivateKey / readPrivateKey', () => {
  it('writes PKCS#8 with mode 0600 and reads it back', async () => {
    const dir = tempDir();
    const keyPem = await generatePrivateKey();
    const path = join(dir, 'key.pem');
    await writePrivateKey(path, keyPem);
    expect(mode(path)).toBe(0o600);
    expect(readFileSync(path, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(sameKey(await readPrivateKey(path), keyPem)).toBe(true);
  });

  it('replaces a world-readable file with a 0600 one', async () => {
    const path = join(tempDir(), 'key.pem');
    writeFileSync(path, 'old', { mode: 0o644 });
    await writePrivateKey(path, await generatePrivateKey());
    expect(mode(path)).toBe(0o600);
  });

  it('encrypts with a passphrase: openssl opens it with that passphrase only', async () => {
    const dir = tempDir();
    const keyPem = await generatePrivateKey();
    const path = join(dir, 'key.pem');
    await writePrivateKey(path, keyPem, { passphrase: 'correct horse' });
    expect(mode(path)).toBe(0o600);
    const text = readFileSync(path, 'utf8');
    expect(text).toMatch(/^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/);
    expect(text).not.toContain(keyPem.split('\n')[1]);
    expect(sameKey(await readPrivateKey(path, { passphrase: 'correct horse' }), keyPem)).toBe(true);

    const ok = openssl(['pkey', '-in', 'key.pem', '-passin', 'pass:correct horse', '-noout'], { cwd: dir });
    expect(ok.code, ok.out).toBe(0);
    expect(openssl(['pkey', '-in', 'key.pem', '-passin', 'pass:wrong', '-noout'], { cwd: dir }).code).not.toBe(0);
    expect(openssl(['asn1parse', '-in', 'key.pem'], { cwd: dir }).out).toContain('aes-256-cbc');
  });

  it('says clearly when the passphrase is wrong or missing, without key material', async () => {
    const path = join(tempDir(), 'key.pem');
    await writePrivateKey(path, await generatePrivateKey(), { passphrase: 'right' });
    const wrong = await readPrivateKey(path, { passphrase: 'wrong' }).catch((e) => e);
    expect(wrong).toBeInstanceOf(MeshValidationError);
    expect(wrong.issues).toEqual([{ path, message: 'cannot decrypt the key: wrong passphrase' }]);
    expect(wrong.message).toBe(`cannot read private key: ${path}: cannot decrypt the key: wrong passphrase`);
    const missing = await readPrivateKey(path).catch((e) => e);
    expect(missing.issues).toEqual([{ path, message: 'the key is encrypted and no passphrase was given' }]);
    expect(JSON.stringify(wrong)).not.toMatch(/PRIVATE KEY/);
  });

  it('refuses to write something that is not a key, or with an empty passphrase', async () => {
    const path = join(tempDir(), 'key.pem');
    await expect(writePrivateKey(path, 'not a key')).rejects.toThrow('keyPem: not a readable unencrypted PEM private key');
    await expect(writePrivateKey(path, await generatePrivateKey(), { passphrase: '' })).rejects.toThrow('passphrase: is empty');
    expect(() => statSync(path)).toThrow();
  });
});
