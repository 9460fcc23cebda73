import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, type Issue, MeshError, MeshValidationError } from '@novamesh/contracts';
import { createIntermediateCa, createRootCa, loadIssuer } from './authority';
import { type CertifiedKey, isSelfIssued, nameConstraintProblem, parseCertificate } from './certificate';
import { readPrivateKey, writeFileAtomic, writePrivateKey } from './keys';
import { assertTrustDomain } from './spiffe-id';
import { webcrypto } from './x509';

/** File names inside the CA directory. Renaming one strands every existing deployment's CA. */
export const CA_FILES = {
  root: 'root.pem',
  rootKey: 'root-key.pem',
  intermediate: 'intermediate.pem',
  intermediateKey: 'intermediate-key.pem',
} as const;

export interface LoadOrCreateCaOptions {
  dir: string;
  trustDomain: string;
  /** Encrypts the keys this function writes, and decrypts encrypted keys it reads. */
  passphrase?: string;
  /** Epoch ms; default Date.now(). */
  now?: number;
  rootValidityDays?: number;
  intermediateValidityDays?: number;
}

/** The CA a process signs with. The root key is absent when the operator plugged in an intermediate only. */
export interface LoadedCa {
  root: { certPem: string; keyPem?: string };
  intermediate: CertifiedKey;
  /** Issuer first, then root: the `chainPems` that {@link signWorkloadCsr} wants. */
  chainPems: string[];
  /** The trust bundle workloads verify peers against (the root, PEM). */
  trustBundlePem: string;
  /** True when this call created (and wrote) the root, the intermediate or both. */
  created: boolean;
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * Loads the CA from `dir`, or creates what is missing and writes it (certificates 0644, keys 0600,
 * encrypted when a passphrase is given, each file written atomically). Three layouts are accepted:
 * - `intermediate.pem` + `intermediate-key.pem` + `root.pem` (+ optional `root-key.pem`): used as they are
 *   (plug-in intermediate); an expired intermediate is replaced when the root key is there;
 * - `root.pem` + `root-key.pem` only (plug-in root): an intermediate is created under it;
 * - an empty or missing directory: a new root (10 y) and intermediate (1 y) are created.
 * Anything else (a key without its certificate, a mismatched key, an intermediate the root did not
 * sign) is refused with MeshValidationError naming the files. Idempotent across restarts: a second
 * call returns the same root and intermediate. One process owns `dir`; concurrent calls on the same
 * directory from two processes are not safe.
 */
export async function loadOrCreateCa(opts: LoadOrCreateCaOptions): Promise<LoadedCa> {
  assertTrustDomain(opts.trustDomain);
  const now = opts.now ?? Date.now();
  const path = (name: keyof typeof CA_FILES) => join(opts.dir, CA_FILES[name]);
  const keyOpts = opts.passphrase === undefined ? {} : { passphrase: opts.passphrase };
  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  const has = Object.fromEntries(
    await Promise.all((Object.keys(CA_FILES) as (keyof typeof CA_FILES)[]).map(async (k) => [k, await exists(path(k))] as const)),
  ) as Record<keyof typeof CA_FILES, boolean>;

  const missing = (need: (keyof typeof CA_FILES)[], because: string): Issue[] =>
    need.filter((k) => !has[k]).map((k) => ({ path: path(k), message: `is missing (${because})` }));
  const refuse = (issues: Issue[]) => {
    if (issues.length) throw new MeshValidationError(`unusable CA directory ${opts.dir}`, issues);
  };

  const writeIntermediate = async (root: CertifiedKey): Promise<CertifiedKey> => {
    const intermediate = await createIntermediateCa({
      root,
      trustDomain: opts.trustDomain,
      now,
      validityDays: opts.intermediateValidityDays,
    });
    await writePrivateKey(path('intermediateKey'), intermediate.keyPem, keyOpts);
    await writeFileAtomic(path('intermediate'), intermediate.certPem, 0o644);
    return intermediate;
  };
  const result = (root: LoadedCa['root'], intermediate: CertifiedKey, created: boolean): LoadedCa => ({
    root,
    intermediate,
    chainPems: [intermediate.certPem, root.certPem],
    trustBundlePem: root.certPem,
    created,
  });

  if (has.intermediate || has.intermediateKey) {
    refuse(missing(['intermediate', 'intermediateKey', 'root'], 'a plug-in intermediate needs its certificate, its key and the root'));
    const rootPem = await readFile(path('root'), 'utf8');
    const rootKey = has.rootKey ? await readPrivateKey(path('rootKey'), keyOpts) : undefined;
    const root = { certPem: rootPem, ...(rootKey === undefined ? {} : { keyPem: rootKey }) };
    const intermediate = {
      certPem: await readFile(path('intermediate'), 'utf8'),
      keyPem: await readPrivateKey(path('intermediateKey'), keyOpts),
    };
    await checkPair(root, intermediate, opts.trustDomain, (k) => path(k));
    const cert = parseCertificate(intermediate.certPem, path('intermediate'));
    if (now <= cert.notAfter.getTime()) return result(root, intermediate, false);
    if (rootKey === undefined) {
      throw new MeshError(
        ErrorCode.unavailable,
        `${path('intermediate')} expired at ${cert.notAfter.toISOString()} and there is no root key to renew it`,
      );
    }
    return result(root, await writeIntermediate({ certPem: rootPem, keyPem: rootKey }), true);
  }

  if (has.root || has.rootKey) {
    refuse(missing(['root', 'rootKey'], 'a plug-in root needs its key to create the intermediate'));
    const root = { certPem: await readFile(path('root'), 'utf8'), keyPem: await readPrivateKey(path('rootKey'), keyOpts) };
    const rootCert = parseCertificate(root.certPem, path('root'));
    if (!isSelfIssued(rootCert)) refuse([{ path: path('root'), message: `"${rootCert.subject}" is not a self-signed root` }]);
    return result(root, await writeIntermediate(root), true);
  }

  const root = await createRootCa({ trustDomain: opts.trustDomain, now, validityDays: opts.rootValidityDays });
  await writePrivateKey(path('rootKey'), root.keyPem, keyOpts);
  await writeFileAtomic(path('root'), root.certPem, 0o644);
  return result(root, await writeIntermediate(root), true);
}

/** Checks a loaded CA: keys match their certificates, the root signed the intermediate, both may sign, the trust domain is admitted. */
async function checkPair(
  root: LoadedCa['root'],
  intermediate: CertifiedKey,
  trustDomain: string,
  path: (k: keyof typeof CA_FILES) => string,
): Promise<void> {
  const issues: Issue[] = [];
  // Validity is not judged here: the caller renews an expired intermediate.
  const load = async (ca: CertifiedKey, cert: keyof typeof CA_FILES, key: keyof typeof CA_FILES) => {
    try {
      return (await loadIssuer(ca, cert, undefined)).cert;
    } catch (err) {
      if (!(err instanceof MeshValidationError)) throw err;
      issues.push(...err.issues.map((i) => ({ path: path(i.path.endsWith('keyPem') ? key : cert), message: i.message })));
      return undefined;
    }
  };
  const rootCert = parseCertificate(root.certPem, path('root'));
  if (root.keyPem !== undefined) await load({ certPem: root.certPem, keyPem: root.keyPem }, 'root', 'rootKey');
  const cert = await load(intermediate, 'intermediate', 'intermediateKey');
  if (cert) {
    const signed =
      cert.issuer === rootCert.subject &&
      (await cert.verify({ publicKey: rootCert.publicKey, signatureOnly: true }, webcrypto).catch(() => false));
    if (!signed) issues.push({ path: path('intermediate'), message: `was not issued by ${path('root')} ("${rootCert.subject}")` });
    const nc = nameConstraintProblem(cert, [{ type: 'url', value: `spiffe://${trustDomain}/ns/x/svc/x` }]);
    if (nc) issues.push({ path: path('intermediate'), message: `does not admit trust domain ${trustDomain}: ${nc}` });
  }
  if (issues.length) throw new MeshValidationError('unusable CA directory', issues);
}
