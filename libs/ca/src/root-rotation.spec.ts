import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TD, tempDir } from './ca.spec-helper';
import { beginRootRotation, certificateInfo, finishRootRotation, loadOrCreateCa, rootRotationInProgress } from './index';

const mode = (path: string) => statSync(path).mode & 0o777;
const fp = (pem: string) => certificateInfo(pem).fingerprint256;

describe('root rotation in the CA directory', () => {
  it('begin keeps the old CA under previous/, trusts both roots, signs with the new intermediate; finish retires the old one', async () => {
    const dir = tempDir();
    const opts = { dir, trustDomain: TD, passphrase: 's3cret' };
    const old = await loadOrCreateCa(opts);
    const rotating = await beginRootRotation(opts);
    expect(fp(rotating.root.certPem)).not.toBe(fp(old.root.certPem));
    expect(rotating.previous?.rootPem).toBe(old.root.certPem);
    expect(rotating.previous?.intermediatePem).toBe(old.intermediate.certPem);
    expect(rotating.trustBundlePem).toBe(`${rotating.root.certPem.trim()}\n${old.root.certPem.trim()}\n`);
    expect(certificateInfo(rotating.root.certPem).notAfter - Date.now()).toBeGreaterThan(3649 * 86_400_000);
    expect(await rootRotationInProgress(dir)).toBe(true);
    for (const key of ['root-key.pem', 'intermediate-key.pem']) {
      expect(mode(join(dir, key))).toBe(0o600);
      expect(mode(join(dir, 'previous', key))).toBe(0o600);
      expect(readFileSync(join(dir, key), 'utf8')).toMatch(/^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
      expect(readFileSync(join(dir, 'previous', key), 'utf8')).toMatch(/^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
    }
    // A restart in the middle of a rotation loads the same state.
    const reloaded = await loadOrCreateCa(opts);
    expect(reloaded.trustBundlePem).toBe(rotating.trustBundlePem);
    expect(reloaded.intermediate.keyPem).toBe(rotating.intermediate.keyPem);
    await expect(beginRootRotation(opts)).rejects.toMatchObject({ code: 'MESH_CONFLICT' });

    const done = await finishRootRotation(opts);
    expect(done.previous).toBeUndefined();
    expect(done.trustBundlePem).toBe(rotating.root.certPem);
    expect(fp(done.root.certPem)).toBe(fp(rotating.root.certPem));
    expect(await rootRotationInProgress(dir)).toBe(false);
    const [retired] = readdirSync(join(dir, 'retired'));
    expect(readFileSync(join(dir, 'retired', retired!, 'root.pem'), 'utf8')).toBe(old.root.certPem);
    expect(mode(join(dir, 'retired', retired!, 'root-key.pem'))).toBe(0o600);
    await expect(finishRootRotation(opts)).rejects.toMatchObject({ code: 'MESH_CONFLICT' });
    expect(fp((await loadOrCreateCa(opts)).root.certPem)).toBe(fp(rotating.root.certPem));
  });
});
